"""The `data` section of an experiment config, and building a pipeline from it.

    cfg.data = data_config("rl")
    cfg.data.spec.paths = ("/data/math.jsonl",)           # files ...
    cfg.data.spec.fields = {"prompt": "problem", "answer": "solution"}
    # ... or no files at all: an offline task generated in-process
    cfg.data.task.name, cfg.data.task.n, cfg.data.task.difficulty = "countdown", 2000, 1
    ds = dataset_from_config(cfg.data, tokenizer)           # a grain.IterDataset of batches

`batch_size` is the global batch; each process gets `batch_size / process_count` rows.
"""
from __future__ import annotations

from typing import Any

import ml_collections

from r1jax.data import pipelines
from r1jax.data.records import KINDS, DatasetSpec, spec_from_config
from r1jax.data.sources import InMemorySource, open_source
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
  c.seq_len = 1024           # sft rows
  c.pack = True
  c.num_packing_bins = 0     # 0 = the local batch size
  c.max_prompt_len = 512     # rl / eval
  c.max_len = 1024           # preference / pointwise rows
  c.k = 1                    # eval samples per question
  c.read_threads = 2
  return c


def source_from_config(cfg: Any) -> Any:
  """Files named by `cfg.spec.paths`, else the offline task `cfg.task.name`."""
  if cfg.spec.paths:
    spec = spec_from_config(dict(cfg.spec.to_dict() if hasattr(cfg.spec, "to_dict") else cfg.spec,
                                 kind=cfg.kind))
    return open_source(spec)
  if cfg.task.name:
    from r1jax.data import tasks

    rows = tasks.get_task(cfg.task.name).generate(cfg.task.split, cfg.task.n, seed=cfg.task.seed,
                                                  difficulty=cfg.task.difficulty)
    name = f"{cfg.task.name}/{cfg.task.split}"
    return InMemorySource(rows, DatasetSpec(paths=(name,), kind=cfg.kind), name=name)
  raise ValueError("data: set data.spec.paths (files) or data.task.name (an offline task)")


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
