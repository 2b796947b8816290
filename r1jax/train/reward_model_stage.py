"""The reward-model stage (paper §2.3.4): a helpfulness (pairwise) or safety (pointwise) reward model.

    python -m r1jax --config=experiments/reward_model.py:tiny --workdir=runs/helpfulness_rm
    python -m r1jax --config=experiments/reward_model.py:tiny --workdir=runs/safety_rm \\
        --config.rm.kind=safety --config.data.corpus=safety

The reward model is the policy architecture with a scalar head (`models.reward_head`), its
backbone from `model.init_from` (an HF-format policy export) or a random `model.preset`. Records
come from a synthetic corpus (`data.corpus`: "preference" / "safety", written to
<workdir>/data/) or files (`data.spec.paths`); `rm.eval_paths` or a seeded `rm.eval_fraction`
of them is held out (written to <workdir>/data/heldout.jsonl). The loop is `train/reward_model`'s
step (pairwise Bradley–Terry on the summary for helpfulness, BCE on the whole response for safety)
with the SFT stage's machinery: global batches on the mesh, orbax checkpoints with the Grain
iterator (exact resume), metrics JSONL / TensorBoard, held-out accuracy and loss every
`rm.eval_every` steps (plus ROC AUC for safety at the end, in <workdir>/eval.json).

The export, <workdir>/final, is a `rewards.model.save_reward_model` directory (backbone in HF
layout, head, tokenizer, reward_model.json), so `helpfulness_rm(path=...)` / `safety_rm(path=...)`
load it and a pipeline refers to it as "{stage}". It is written last and atomically: its
reward_model.json marks a finished stage, and a re-run on a finished workdir trains nothing.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from r1jax import fs
from r1jax.models.reward_head import RewardModel, make_score_fn, split_reward_model
from r1jax.parallel.multihost import host_get
from r1jax.rewards.model import META_FILE, RM_KINDS, save_reward_model
from r1jax.train import common
from r1jax.train import reward_model as trm
from r1jax.train.config_check import ConfigError, check_model, check_registry_names, need_positive, need_sections
from r1jax.train.stage_run import StageRun
from r1jax.train.state import init_train_state, make_optimizer, merge

log = logging.getLogger(__name__)

DATA_KIND = {"helpfulness": "preference", "safety": "pointwise"}
CORPUS = {"helpfulness": "preference", "safety": "safety"}
EVAL_FILE = "eval.json"
HELDOUT_FILE = "data/heldout.jsonl"


# ------------------------------------------------------------------ config


def check_reward_model_config(cfg) -> None:
  """Start-of-run checks of a reward_model stage; each error names its key."""
  need_sections(cfg, ("model", "tokenizer", "data", "optim", "train", "rm"))
  check_model(cfg)
  kind = cfg.rm.kind
  if kind not in RM_KINDS:
    raise ConfigError(f"config.rm.kind: {kind!r} is not one of {RM_KINDS}")
  if cfg.data.kind not in ("", DATA_KIND[kind]):
    raise ConfigError(f"config.data.kind: a {kind} reward model reads {DATA_KIND[kind]!r} data, got "
                      f"{cfg.data.kind!r} (leave it empty to follow rm.kind)")
  if cfg.data.corpus and cfg.data.corpus != CORPUS[kind]:
    raise ConfigError(f"config.data.corpus: a {kind} reward model trains on the {CORPUS[kind]!r} corpus, "
                      f"got {cfg.data.corpus!r}")
  if not cfg.data.corpus and not cfg.data.spec.paths:
    raise ConfigError(f"config.data: set data.corpus ({CORPUS[kind]!r}, synthetic) or data.spec.paths (files)")
  for key, paths in (("data.spec.paths", cfg.data.spec.paths), ("rm.eval_paths", cfg.rm.eval_paths)):
    for path in paths:
      if not fs.exists(path):
        raise ConfigError(f"config.{key}: {path} does not exist")
  if not 0.0 <= float(cfg.rm.eval_fraction) < 1.0:
    raise ConfigError(f"config.rm.eval_fraction: must be in [0, 1), got {cfg.rm.eval_fraction}")
  need_positive(cfg.train, ("steps", "log_every", "checkpoint_every", "keep_checkpoints"), "train")
  need_positive(cfg.rm, ("eval_batch_size",), "rm")
  need_positive(cfg.data, ("batch_size",), "data")
  if int(cfg.rm.eval_every) < 0:
    raise ConfigError(f"config.rm.eval_every: must be >= 0 (0: only at the end), got {cfg.rm.eval_every}")
  if int(cfg.data.max_len) < 2:
    raise ConfigError(f"config.data.max_len: must be >= 2, got {cfg.data.max_len}")
  if float(cfg.optim.learning_rate) <= 0:
    raise ConfigError(f"config.optim.learning_rate: must be > 0, got {cfg.optim.learning_rate}")
  check_registry_names(cfg)  # model.preset, tokenizer.train_corpus, data.template, data.corpus


def _data_config(cfg, workdir: str) -> ml_collections.ConfigDict:
  """A copy of cfg.data with the kind rm.kind reads and the synthetic corpus resolved to a file."""
  data = ml_collections.ConfigDict(cfg.data.to_dict())
  data.kind = DATA_KIND[cfg.rm.kind]
  common.resolve_offline_corpus(data, workdir)
  return data


# ------------------------------------------------------------------ records


def _read(data, paths: Sequence[str]) -> list[dict[str, Any]]:
  """Every record of the files `paths`, validated as `data.kind` records (each keeps its `_loc`)."""
  from r1jax.data.config import source_from_config

  spec = ml_collections.ConfigDict(data.to_dict())
  spec.spec.paths = tuple(paths)
  src = source_from_config(spec)
  return [src[i] for i in range(len(src))]


def split_records(records: Sequence[Mapping[str, Any]], fraction: float,
                  seed: int) -> tuple[list[dict], list[dict]]:
  """(train, held out): a seeded permutation's first round(fraction * N) records are held out
  (at least one when fraction > 0); the same on every process and every resume."""
  n_eval = 0 if fraction <= 0 else max(1, int(round(fraction * len(records))))
  if n_eval >= len(records):
    raise ValueError(f"rm.eval_fraction={fraction} holds out all {len(records)} records")
  order = np.random.default_rng([int(seed), 2027]).permutation(len(records))
  held = set(int(i) for i in order[:n_eval])
  train = [dict(records[i]) for i in range(len(records)) if i not in held]
  return train, [dict(records[int(i)]) for i in order[:n_eval]]


def _write_jsonl(rows: Sequence[Mapping[str, Any]], path: str) -> None:
  """Process 0 writes `rows` (without their "_" keys) atomically."""
  from r1jax.data.sources import write_jsonl

  if jax.process_index() != 0:
    return
  write_jsonl(({k: v for k, v in r.items() if not k.startswith("_")} for r in rows), path)


def load_records(cfg, data, workdir: str) -> tuple[list[dict], list[dict]]:
  """(training records with the scored text selected, raw held-out records)."""
  records = _read(data, data.spec.paths)
  if cfg.rm.eval_paths:
    train, heldout = records, _read(data, cfg.rm.eval_paths)
  else:
    train, heldout = split_records(records, float(cfg.rm.eval_fraction), int(cfg.seed))
  _write_jsonl(heldout, fs.join(workdir, HELDOUT_FILE))
  train, _ = trm.prepare_records(cfg.rm.kind, train)
  if not train:
    raise ValueError(f"reward model stage: no usable {cfg.rm.kind} training records in {data.spec.paths}")
  return train, heldout


# ------------------------------------------------------------------ evaluation


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """P(score of a random positive > score of a random negative), ties counting 1/2 (Mann–Whitney)."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0
  n_pos, n_neg = int(labels.sum()), int((~labels).sum())
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, averaged over ties
  return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(kind: str, model: RewardModel, tokenizer, records: Sequence[Mapping[str, Any]], *, batch_size: int,
             max_len: int, template, auc: bool = False) -> dict[str, float]:
  """Held-out `eval/accuracy`, `eval/loss`, `eval/count` (+ `eval/auc` for safety when `auc`)."""
  kw = dict(batch_size=batch_size, max_len=max_len, template=template)
  out = {f"eval/{k}": v for k, v in trm.evaluate_records(kind, model, tokenizer, records, **kw).items()}
  if auc and kind == "safety":
    graphdef, params, extra = split_reward_model(model)
    score = make_score_fn(graphdef)
    scores, labels = [], []
    for b in trm.eval_batches(kind, records, tokenizer, **kw):
      keep = np.asarray(b["valid"]) > 0
      scores.append(np.asarray(host_get(score(params, extra, b["tokens"], b["lengths"])))[keep])
      labels.append(np.asarray(b["labels"])[keep])
    out["eval/auc"] = roc_auc(np.concatenate(scores), np.concatenate(labels))
  return out


# ------------------------------------------------------------------ export


def export_reward_model(model: RewardModel, tokenizer, cfg, workdir: str, template) -> str:
  """<workdir>/final via `save_reward_model` (reward_model.json written last); see `publish_final`."""
  from r1jax.convert.hf import drain_hf_tensors

  source = common.tokenizer_source(cfg)

  def write(tmp: str) -> None:
    save_reward_model(model, tmp, kind=cfg.rm.kind, tokenizer=source if source else tokenizer,
                      template=template, max_len=int(cfg.data.max_len))

  def drain() -> None:
    drain_hf_tensors(model.backbone)
    host_get((model.score_head[...], model.score_bias[...]))

  return common.publish_final(workdir, write, drain, marker=META_FILE)


def _read_json(path: str) -> dict:
  return fs.read_json(path) if fs.exists(path) else {}


# ------------------------------------------------------------------ the stage


def run_reward_model(cfg, workdir: str, checked=None) -> dict:
  """Trains (or resumes, or skips when exported) the `rm.kind` reward model; returns its held-out
  metrics. `cfg` has passed `check_reward_model_config` (run it through `train.stages.run_stage`)."""
  from r1jax.data.config import dataset_from_config
  from r1jax.data.global_batch import to_global
  from r1jax.data.templates import build_template

  if fs.exists(fs.join(workdir, common.FINAL, META_FILE)):
    log.info("%s: reward model already exported; nothing to do", workdir)
    return _read_json(fs.join(workdir, EVAL_FILE))
  kind, total = cfg.rm.kind, int(cfg.train.steps)
  with StageRun(cfg, workdir, default_name="reward_model") as run:
    tok, mesh = run.tokenizer, run.mesh
    data = _data_config(cfg, workdir)
    template = build_template(data.template)
    train_records, heldout = load_records(cfg, data, workdir)
    eval_kw = dict(batch_size=int(cfg.rm.eval_batch_size), max_len=int(data.max_len), template=template)
    rm = RewardModel.from_policy(common.init_policy(cfg, mesh, vocab_size=tok.vocab_size), seed=int(cfg.seed))
    graphdef, params, extra = split_reward_model(rm)
    tx = make_optimizer({**dict(cfg.optim), "total_steps": total})
    it = iter(dataset_from_config(data, tok, source=train_records))
    restored, _ = run.restore({"state": init_train_state(params, extra, tx, seed=int(cfg.seed))}, data_iterator=it)
    state = restored["state"]
    run.progress(total, int(state.step), keys={"loss": "train/loss", "acc": "train/accuracy",
                                               "eval_acc": "eval/accuracy"})
    eval_every, log_every = int(cfg.rm.eval_every), int(cfg.train.log_every)
    steps = trm.training_steps(kind, graphdef, tx, state, it, start=int(state.step), steps=total,
                               place=lambda b: to_global(b, mesh))
    for step, state, m, batch in steps:
      row = {}
      if step % log_every == 0 or step == total:
        row = {**{f"train/{k}": float(v) for k, v in host_get(m).items()},
               "train/dropped_total": float(batch.get("dropped_total", 0))}
      if heldout and eval_every and step % eval_every == 0 and step != total:
        row.update(evaluate(kind, merge(graphdef, state.params, state.extra), tok, heldout, **eval_kw))
      run.log(step, row)  # an empty row only advances the bar
      run.save(step, {"state": state}, last=total, data_iterator=it)
    model = merge(graphdef, state.params, state.extra)
    result = {"kind": kind, "steps": total, "train_records": len(train_records)}
    if heldout:
      result.update(evaluate(kind, model, tok, heldout, auc=True, **eval_kw))
      run.writer.write(total, {k: v for k, v in result.items() if k.startswith("eval/")})
      log.info("%s reward model, held out: %s", kind, {k: v for k, v in result.items() if k.startswith("eval/")})
    if run.is_main:
      fs.write_json(fs.join(workdir, EVAL_FILE), result)
    export_reward_model(model, tok, cfg, workdir, template)
  return result
