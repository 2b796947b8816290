"""The `data` section of an experiment config, and building a pipeline from it.

    cfg.data = data_config("rl")
    cfg.data.spec.paths = ("/data/math.jsonl",)           # files ...
    cfg.data.spec.fields = {"prompt": "problem", "answer": "solution"}
    # ... or no files at all: an offline task generated in-process
    cfg.data.task.name, cfg.data.task.n, cfg.data.task.difficulty = "countdown", 2000, 1
    ds = dataset_from_config(cfg.data, tokenizer)           # a grain.IterDataset of batches

`batch_size` is the global batch; each process gets `batch_size / process_count` rows.

RL only: `cfg.data.general` mixes general (non-reasoning) prompts into the prompt stream, as
all-scenario RL does (paper §2.3.4): `general.n` rows of a synthetic corpus (`general.corpus =
"general_prompts"`) and/or the files `general.paths` (fields mapped by `general.fields`). They
join the reasoning prompts before the shuffle, so each batch mixes them in proportion to the
sizes. Rows that name no task get `general.task` ("general"), which is how rewards are routed
to them (`rewards.options.<reward>.tasks`); rows without an answer get {} (reward models need
no reference).
"""
from __future__ import annotations

from typing import Any

import ml_collections

from r1jax.data import pipelines
from r1jax.data.records import KINDS, DatasetSpec, spec_from_config
from r1jax.data.sources import ConcatSource, InMemorySource, open_source
from r1jax.data.templates import build_template
from r1jax.data.tokenizer import Tokenizer


def data_config(kind: str = "rl") -> ml_collections.ConfigDict:
  """Defaults for one pipeline of `kind` (sft, rl, eval, preference, pointwise)."""
  if kind not in KINDS:
    raise ValueError(f"data.kind: {kind!r} is not one of {KINDS}")
  c = ml_collections.ConfigDict()
  c.kind = kind
  c.spec = ml_collections.ConfigDict(dict(
      paths=(), format="auto", fields={}, defaults={}, max_skip_fraction=0.01, max_logged_skips=20))
  c.task = ml_collections.ConfigDict(dict(name="", split="train", n=2000, difficulty=1, seed=0))
  c.template = ml_collections.ConfigDict(dict(
      name="r1_zero" if kind in ("rl", "eval") else "r1", chat_format="plain", system="",
      generation_prefix="", shots=[]))
  c.batch_size = 32          # global, over all processes
  c.seed = 0
  c.num_epochs = ml_collections.config_dict.placeholder(int)   # None = repeat forever
  c.shuffle = True
  c.read_threads = 2
  # Only the fields this kind's pipeline reads (a field another kind uses is a KeyError here).
  if kind == "sft":
    c.seq_len = 1024
    c.pack = True
    c.num_packing_bins = 0   # 0 = the local batch size
  if kind in ("rl", "eval"):
    c.max_prompt_len = 512
  if kind == "eval":
    c.k = 1                  # samples per question
  if kind in ("preference", "pointwise"):
    c.max_len = 1024         # prompt + response tokens per row
  if kind == "rl":
    c.general = ml_collections.ConfigDict(dict(corpus="", n=0, paths=(), fields={}, task="general", seed=0))
  return c


def general_source(cfg: Any) -> Any:
  """The general prompts of `cfg.general` (see the module docstring), or None when it names none."""
  g = cfg.get("general", None)
  if g is None or not (g.corpus or g.paths):
    return None
  defaults = {"task": g.task, "answer": {}}
  sources = []
  if g.corpus:
    from r1jax.data.tasks import corpora

    make = getattr(corpora, f"{g.corpus}_corpus", None)
    if make is None:
      raise ValueError(f"data.general.corpus: unknown corpus {g.corpus!r} (a name in data.tasks.corpora)")
    if int(g.n) <= 0:
      raise ValueError(f"data.general.n: must be > 0 with data.general.corpus set, got {g.n}")
    name = f"{g.corpus}/general"
    sources.append(InMemorySource(make(n=int(g.n), seed=int(g.seed)),
                                  DatasetSpec(paths=(name,), kind="rl", defaults=defaults), name=name))
  if g.paths:
    sources.append(open_source(DatasetSpec(paths=tuple(g.paths), kind="rl", fields=dict(g.fields),
                                           defaults=defaults)))
  return sources[0] if len(sources) == 1 else ConcatSource(sources)


def source_from_config(cfg: Any) -> Any:
  """Files named by `cfg.spec.paths`, else the offline task `cfg.task.name`; then (RL) the
  general prompts of `cfg.general` after them."""
  general = general_source(cfg)
  if cfg.spec.paths:
    spec = spec_from_config(dict(cfg.spec.to_dict() if hasattr(cfg.spec, "to_dict") else cfg.spec,
                                 kind=cfg.kind))
    src = open_source(spec)
  elif cfg.task.name:
    from r1jax.data import tasks

    rows = tasks.get_task(cfg.task.name).generate(cfg.task.split, cfg.task.n, seed=cfg.task.seed,
                                                  difficulty=cfg.task.difficulty)
    name = f"{cfg.task.name}/{cfg.task.split}"
    src = InMemorySource(rows, DatasetSpec(paths=(name,), kind=cfg.kind), name=name)
  elif general is not None:
    return general
  else:
    raise ValueError("data: set data.spec.paths (files) or data.task.name (an offline task)")
  return src if general is None else ConcatSource([src, general])


def dataset_from_config(cfg: Any, tokenizer: Tokenizer, source: Any = None,
                        process_index: int | None = None, process_count: int | None = None):
  """The pipeline `cfg.kind` over `source` (default: `source_from_config(cfg)`)."""
  index, count = pipelines.process_shard(process_index, process_count)
  src = source if source is not None else source_from_config(cfg)
  template = build_template(cfg.template)
  local = pipelines.local_batch_size(cfg.batch_size, count)
  shard = dict(process_index=index, process_count=count)
  if cfg.kind == "eval":
    return pipelines.eval_dataset(src, tokenizer, template, k=cfg.k, batch_size=local,
                                  max_prompt_len=cfg.max_prompt_len, **shard)
  common = dict(batch_size=local, seed=cfg.seed, num_epochs=cfg.num_epochs, shuffle=cfg.shuffle,
                read_threads=cfg.read_threads, **shard)
  if cfg.kind == "sft":
    return pipelines.sft_dataset(src, tokenizer, template, seq_len=cfg.seq_len, pack=cfg.pack,
                                 num_packing_bins=cfg.num_packing_bins or None, **common)
  if cfg.kind == "rl":
    return pipelines.rl_prompt_dataset(src, tokenizer, template,
                                       max_prompt_len=cfg.max_prompt_len, **common)
  return pipelines.build_dataset(cfg.kind, src, tokenizer, template, max_len=cfg.max_len, **common)
