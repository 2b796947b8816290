"""The rejection-sampling stage (R1 stage 3, data half) and distillation data generation.

`run_rejection(cfg, workdir)` loads a policy (`model.init_from`: the reasoning-RL export, or a
distillation teacher), samples `sampling.k` completions for each prompt of the offline task(s)
`data.task.name` (comma-separated) or the RL files `data.spec.paths`, keeps the correct readable
ones (`train/rejection/`), mixes in non-reasoning SFT data (`mix`), and writes

    <workdir>/data/rejection_sft.jsonl       the SFT dataset (kind "sft"; written last, atomically)
    <workdir>/data/rejection_sft.arrayrecord  the same rows, with output.arrayrecord=True
    <workdir>/stats.json                     counts per drop reason, acceptance rate, lengths, ...
    <workdir>/metrics.jsonl                  one row with the same numbers
    <workdir>/data/parts/shard_*.jsonl       kept rows per shard of `rejection.shard_prompts`

Resume: a finished run (the dataset file exists) returns its stats without sampling again; an
interrupted one reuses every finished shard (each shard's seed depends only on the run seed and
the shard index, so a resumed run writes the same dataset as an uninterrupted one).

`cfg.stage` selects the provenance: "distillation" tags reasoning rows `source="distillation"`
(teacher outputs for a smaller student), anything else `source="rejection"`. The dataset is text,
so a student with another tokenizer re-tokenizes it in its own SFT stage.

Multi-host: every process samples the same prompts (the policy is one global array set); process
0 writes. Preemption (SIGTERM) is honoured between shards on a single process.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

import jax
import numpy as np
from flax import nnx

from r1jax import fs
from r1jax.parallel.multihost import sync
from r1jax.train import common, rejection
from r1jax.train.config_check import (ConfigError, check_corpus_names, check_model, check_registry_names,
                                      check_reward_name, need_positive, need_sections)

log = logging.getLogger(__name__)

DATASET_NAME = "rejection_sft"
STATS_FILE = "stats.json"


def dataset_path(workdir: str, fmt: str = "jsonl") -> str:
  """Where the stage writes its dataset (what the following SFT stage's data.spec.paths names)."""
  return fs.join(workdir, "data", f"{DATASET_NAME}.{fmt}")


def source_tag(cfg) -> str:
  return "distillation" if cfg.get("stage", "") == "distillation" else "rejection"


# ------------------------------------------------------------------------------------- config


def check_rejection_config(cfg) -> None:
  """Start-of-run checks for a kind="rejection" config; each error names its key."""
  need_sections(cfg, ("model", "tokenizer", "data", "sampling", "rejection", "filters", "mix", "output"))
  check_model(cfg)  # the RL export (rejection sampling) or the teacher (distillation)
  if cfg.data.kind != "rl":
    raise ConfigError(f"config.data.kind: rejection sampling reads 'rl' prompts, got {cfg.data.kind!r}")
  if not cfg.data.spec.paths and not [n for n in str(cfg.data.task.name).split(",") if n.strip()]:
    raise ConfigError("config.data: set data.task.name (offline task(s), comma-separated) or data.spec.paths")
  check_registry_names(cfg)  # model.preset, tokenizer.train_corpus, data.template, data.task.name
  s = cfg.sampling
  need_positive(s, ("k", "max_new_tokens", "batch_prompts"), "sampling")
  need_positive(s, ("temperature", "num_slots"), "sampling", allow_zero=True)
  if not 0.0 < s.top_p <= 1.0:
    raise ConfigError(f"config.sampling.top_p: must be in (0, 1], got {s.top_p}")
  if s.temperature == 0 and s.k > 1:
    log.warning("config.sampling: temperature 0 (greedy) with k=%d gives k identical samples", s.k)
  r = cfg.rejection
  need_positive(r, ("keep_per_prompt",), "rejection")
  if r.keep_per_prompt > s.k:
    raise ConfigError(f"config.rejection.keep_per_prompt={r.keep_per_prompt} exceeds sampling.k={s.k}")
  need_positive(r, ("num_prompts", "shard_prompts", "min_kept"), "rejection", allow_zero=True)
  check_reward_name(r.reward, "rejection.reward")
  try:
    filters_from_config(cfg.filters)
  except ValueError as e:
    raise ConfigError(f"config.filters: {e}") from e
  if not cfg.mix.ratio > 0:
    raise ConfigError(f"config.mix.ratio: must be > 0 (reasoning rows per non-reasoning row), got {cfg.mix.ratio}")
  if cfg.mix.corpus:
    check_corpus_names(cfg.mix.corpus, "mix.corpus")
  for path in cfg.mix.paths:
    if not fs.exists(path):
      raise ConfigError(f"config.mix.paths: {path} does not exist")


def filters_from_config(f) -> rejection.FilterConfig:
  return rejection.FilterConfig(language=str(f.language), min_language_consistency=float(f.min_language_consistency),
                                max_paragraph_chars=int(f.max_paragraph_chars),
                                allow_code_blocks=bool(f.allow_code_blocks), require_think=bool(f.require_think))


# -------------------------------------------------------------------------------------- data


def prompt_records(data_cfg) -> list[dict[str, Any]]:
  """The prompts: RL files (`spec.paths`) or offline task(s) `task.name` ("a,b": n of each),
  validated like the RL pipeline's; shuffled with `data.seed` when `data.shuffle`."""
  from r1jax.data.config import source_from_config
  from r1jax.data.records import DatasetSpec
  from r1jax.data.sources import InMemorySource

  if data_cfg.spec.paths:
    sources = [source_from_config(data_cfg)]
  else:
    from r1jax.data import tasks

    t = data_cfg.task
    sources = []
    for name in (n.strip() for n in str(t.name).split(",") if n.strip()):
      rows = tasks.get_task(name).generate(t.split, int(t.n), seed=int(t.seed), difficulty=int(t.difficulty))
      label = f"{name}/{t.split}"
      sources.append(InMemorySource(rows, DatasetSpec(paths=(label,), kind="rl"), name=label))
  records = [src[i] for src in sources for i in range(len(src))]
  if data_cfg.get("shuffle", True):
    order = np.random.default_rng(int(data_cfg.seed)).permutation(len(records))
    records = [records[int(i)] for i in order]
  return records


def non_reasoning_rows(mix_cfg, wanted: int) -> list[dict[str, Any]]:
  """`wanted` rows of the synthetic corpus `mix.corpus`, plus every row of the SFT files `mix.paths`."""
  rows: list[dict[str, Any]] = []
  if mix_cfg.corpus and wanted > 0:
    from r1jax.data.tasks import corpora

    rows += getattr(corpora, f"{mix_cfg.corpus}_corpus")(n=wanted, seed=int(mix_cfg.seed))
  if mix_cfg.paths:
    from r1jax.data.records import DatasetSpec
    from r1jax.data.sources import open_source

    src = open_source(DatasetSpec(paths=tuple(mix_cfg.paths), kind="sft"))
    rows += [{k: v for k, v in src[i].items() if not k.startswith("_")} for i in range(len(src))]
  return rows


# -------------------------------------------------------------------------------------- runner


def _read_jsonl(path: str) -> list[dict]:
  return [json.loads(line) for line in fs.read_text(path).splitlines() if line.strip()]


def _shard_seed(seed: int, shard: int) -> int:
  return int(np.random.SeedSequence([int(seed), 0x5EED, int(shard)]).generate_state(1)[0])


def run_rejection(cfg, workdir: str, checked=None) -> dict:
  """Runs (or resumes, or skips when finished) rejection sampling in `workdir`; returns its stats.
  `cfg` has passed `check_rejection_config` (run it through `train.stages.run_stage`)."""
  from r1jax.data.templates import build_template
  from r1jax.rewards import registry
  from r1jax.sampling import Sampler
  from r1jax.train.checkpoint import preempted
  from r1jax.train.metrics import MetricsWriter
  from r1jax.train.stage_run import StageRun

  out_path = dataset_path(workdir)
  stats_path = fs.join(workdir, STATS_FILE)
  if fs.exists(out_path) and fs.exists(stats_path):
    log.info("%s exists: rejection sampling already finished; nothing to do", out_path)
    return {**fs.read_json(stats_path), "skipped": True}
  t_start = time.perf_counter()
  source = source_tag(cfg)
  filters = filters_from_config(cfg.filters)
  s, r = cfg.sampling, cfg.rejection
  records = prompt_records(cfg.data)
  n_available = len(records)
  if int(r.num_prompts):
    records = records[:int(r.num_prompts)]
  shard_size = int(r.shard_prompts) or max(len(records), 1)
  n_shards = -(-len(records) // shard_size)

  run = StageRun(cfg, workdir, default_name="rejection", checkpoints=False, tensorboard=False)
  mesh, tok = run.mesh, run.tokenizer
  tmpl_cfg = cfg.data.template.to_dict()
  tmpl_cfg["system"] = tmpl_cfg.get("system") or None
  template = build_template(tmpl_cfg)
  stop_ids = tok.sampling_stop_ids(bool(s.get("stop_at_answer_end")))
  reward_fn = registry.build(r.reward, **dict(r.get("reward_options", {}) or {}))
  rows: list[dict] = []
  parts: list[dict] = []
  try:
    with run:
      model = common.init_policy(cfg, mesh, vocab_size=tok.vocab_size)
      if tok.vocab_size > model.cfg.vocab_size:
        raise ValueError(f"tokenizer has {tok.vocab_size} ids but the model's vocabulary is {model.cfg.vocab_size} "
                         "(config.tokenizer.path does not belong to config.model.init_from)")
      graphdef, params = nnx.split(model)
      sampler = Sampler(graphdef, model.cfg, mesh=mesh)
      for shard in range(n_shards):
        part_rows = fs.join(workdir, "data", "parts", f"shard_{shard:05d}.jsonl")
        part_stats = part_rows[:-len(".jsonl")] + ".stats.json"
        if fs.exists(part_stats) and fs.exists(part_rows):  # the stats file is written last
          rows += _read_jsonl(part_rows)
          parts.append(fs.read_json(part_stats))
          continue
        kept, st = rejection.generate_and_select(
            sampler, params, tok, template, records[shard * shard_size:(shard + 1) * shard_size], reward_fn,
            k=int(s.k), keep_per_prompt=int(r.keep_per_prompt), temperature=float(s.temperature),
            top_p=float(s.top_p), top_k=int(s.top_k), max_new_tokens=int(s.max_new_tokens),
            stop_token_ids=stop_ids, seed=_shard_seed(cfg.seed, shard), batch_prompts=int(s.batch_prompts),
            max_prompt_len=int(cfg.data.max_prompt_len), num_slots=int(s.num_slots) or None,
            refill=bool(s.refill), filters=filters, correct_threshold=float(r.correct_threshold),
            drop_truncated=bool(r.drop_truncated), source=source,
            progress=bool(cfg.get("progress", True)) and jax.process_index() == 0)
        if jax.process_index() == 0:
          rejection.write_dataset(kept, part_rows)
          fs.write_json(part_stats, st)
        sync(f"rejection shard {shard}")
        rows += kept
        parts.append(st)
        log.info("shard %d/%d: kept %d of %d completions (acceptance %.3f)", shard + 1, n_shards, st["kept"],
                 st["completions"], st["acceptance_rate"])
        if preempted() and jax.process_count() == 1 and shard + 1 < n_shards:
          log.warning("preempted after shard %d of %d; rerun to continue", shard + 1, n_shards)
          raise SystemExit(0)
  finally:
    close = getattr(reward_fn, "close", None)
    if callable(close):
      close()

  stats: dict[str, Any] = rejection.combine_stats(parts)
  n_reasoning = len(rows)
  ratio = float(cfg.mix.ratio)
  wanted = int(round(n_reasoning / ratio))
  mixed = rejection.mix_with_non_reasoning(rows, non_reasoning_rows(cfg.mix, wanted), ratio=ratio,
                                           seed=int(cfg.mix.seed))
  stats.update({"stage": cfg.get("stage", "rejection"), "source": source, "prompts/available": n_available,
                "shards": n_shards, "rows/reasoning": n_reasoning, "rows/non_reasoning": len(mixed) - n_reasoning,
                "rows/total": len(mixed), "dataset": out_path, "seconds/total": time.perf_counter() - t_start})
  if n_reasoning < int(r.min_kept):
    if jax.process_index() == 0:
      fs.write_json(stats_path, stats)
    raise RuntimeError(f"rejection sampling kept {n_reasoning} completions (< rejection.min_kept={int(r.min_kept)}) "
                       f"of {stats['completions']} sampled: accuracy {stats['accuracy']:.3f}, drops "
                       f"{ {k: stats[k] for k in stats if k.startswith(('dropped/', 'filter/'))} }; see {stats_path}")
  if jax.process_index() == 0:
    if cfg.output.get("arrayrecord", False):
      stats["dataset_arrayrecord"] = dataset_path(workdir, "arrayrecord")
      rejection.write_dataset(mixed, stats["dataset_arrayrecord"], fmt="arrayrecord")
    fs.write_json(stats_path, stats)
    rejection.write_dataset(mixed, out_path)  # last: its existence marks a finished run
    writer = MetricsWriter(workdir)
    writer.write(0, stats)
    writer.close()
  sync("rejection dataset written")
  log.info("rejection sampling: %d reasoning + %d non-reasoning rows -> %s", n_reasoning,
           len(mixed) - n_reasoning, out_path)
  return {**stats, "skipped": False}
