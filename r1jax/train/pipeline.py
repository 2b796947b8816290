"""Chains stages: each runs in <workdir>/<name> from its own experiment config plus overrides, and
later stages refer to earlier outputs as "{name}" (that stage's HF-format export, <dir>/final) or
"{name:dir}" (its workdir). "{config:field}" is a top-level field of the pipeline config itself, so
a pipeline can expose e.g. `--config.teacher=DIR` to its stages. A stage whose export exists is
skipped, so re-running resumes the pipeline; each stage resumes itself from its checkpoints."""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
from typing import Any

import jax

from r1jax import fs

log = logging.getLogger(__name__)

_REF = re.compile(r"\{([A-Za-z0-9_]+)(:dir)?\}")
_FIELD_REF = re.compile(r"\{config:([A-Za-z0-9_]+)\}")


def load_experiment(spec: str, root: str):
  """"file.py:preset" (relative to `root`) -> that file's get_config(preset)."""
  path, _, preset = spec.partition(":")
  full = path if os.path.isabs(path) else os.path.join(root, path)
  if not os.path.exists(full):
    raise FileNotFoundError(f"pipeline: experiment file {full!r} not found")
  mod_spec = importlib.util.spec_from_file_location(f"r1jax_experiment_{os.path.basename(path)[:-3]}", full)
  module = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(module)
  return module.get_config(preset) if preset else module.get_config()


def resolve(value: Any, dirs: dict[str, str]) -> Any:
  """Replaces {stage} / {stage:dir} references (in strings, tuples and dicts) by paths."""
  if isinstance(value, str):
    def sub(m):
      name, as_dir = m.group(1), m.group(2)
      if name not in dirs:
        raise KeyError(f"pipeline: reference to {name!r} before that stage ran (known: {sorted(dirs)})")
      return dirs[name] if as_dir else fs.join(dirs[name], "final")
    return _REF.sub(sub, value)
  if isinstance(value, (tuple, list)):
    return type(value)(resolve(v, dirs) for v in value)
  if isinstance(value, dict):
    return {k: resolve(v, dirs) for k, v in value.items()}
  return value


def resolve_fields(value: Any, cfg, _seen: tuple[str, ...] = ()) -> Any:
  """Replaces {config:field} references by the pipeline config's top-level fields. A string that is
  exactly one reference takes the field's value as is (a dict, a tuple, a number); a field may
  itself refer to another one."""
  if isinstance(value, str):
    def field(name):
      if name in _seen:
        raise ValueError(f"pipeline: {{config:{name}}}: circular reference ({' -> '.join(_seen + (name,))})")
      if name not in cfg:
        raise KeyError(f"pipeline: {{config:{name}}}: the pipeline config has no field {name!r}")
      v = cfg[name]
      return resolve_fields(v.to_dict() if hasattr(v, "to_dict") else v, cfg, _seen + (name,))
    whole = _FIELD_REF.fullmatch(value)
    if whole:
      return field(whole.group(1))
    return _FIELD_REF.sub(lambda m: str(field(m.group(1))), value)
  if isinstance(value, (tuple, list)):
    return type(value)(resolve_fields(v, cfg, _seen) for v in value)
  if isinstance(value, dict):
    return {k: resolve_fields(v, cfg, _seen) for k, v in value.items()}
  return value


def apply_overrides(cfg, overrides: dict[str, Any], where: str, *, strict: bool = True):
  """Sets dotted keys; a missing field is an error naming it (or skipped when not strict)."""
  for dotted, value in overrides.items():
    node = cfg
    keys = dotted.split(".")
    for k in keys:
      if k not in node:
        if not strict:
          break
        raise KeyError(f"{where}: override {dotted!r}: no field {k!r}")
      if k != keys[-1]:
        node = node[k]
    else:
      node[keys[-1]] = value
  return cfg


def _offset_seeds(stage_cfg, offset: int) -> None:
  if not offset:
    return
  for node in (stage_cfg, stage_cfg.get("data")):
    if node is not None and "seed" in node:
      node.seed = int(node.seed) + offset


def stage_done(kind: str, workdir: str) -> bool:
  if kind == "rejection":
    return fs.exists(fs.join(workdir, "data", "rejection_sft.jsonl"))
  if kind == "evaluate":
    return fs.exists(fs.join(workdir, "eval_table.md"))
  if kind == "reward_model":
    return fs.exists(fs.join(workdir, "final", "reward_model.json"))
  return fs.exists(fs.join(workdir, "final", "config.json"))


def check_pipeline_config(cfg) -> None:
  """Stage names are unique; each stage is validated with its own config when it starts."""
  from r1jax.train.config_check import ConfigError, need

  names = [s[0] for s in need(cfg, "stages")]
  if len(set(names)) != len(names):
    raise ConfigError(f"config.stages: stage names repeat: {names}")


def run_pipeline(cfg, workdir: str, checked=None) -> dict:
  from r1jax.train.stages import run_stage

  root = cfg.get("experiments_dir") or os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), "experiments")
  dirs: dict[str, str] = {}
  timings: dict[str, float] = {}
  only = {s.strip() for s in str(cfg.get("only", "")).split(",") if s.strip()}
  for name, spec, overrides in cfg.stages:
    overrides = dict(overrides)
    stage_dir = fs.join(workdir, name)
    dirs[name] = stage_dir
    if only and name not in only:
      continue
    stage_cfg = load_experiment(spec, root)
    apply_overrides(stage_cfg, resolve(resolve_fields(overrides, cfg), dirs), f"pipeline stage {name!r}")
    # A pipeline seed offsets every stage's own seeds (model init, sampling, data order, synthetic
    # corpora); 0 leaves them as the stage configs say. Held-out eval problems stay fixed.
    _offset_seeds(stage_cfg, int(cfg.get("seed", 0)))
    # Common overrides come last (e.g. shrinking every stage for a smoke run) and apply wherever
    # the stage has the field.
    apply_overrides(stage_cfg, resolve(resolve_fields(dict(cfg.get("common_overrides", ()) or ()), cfg), dirs),
                    f"pipeline stage {name!r}", strict=False)
    if stage_done(stage_cfg.kind, stage_dir):
      log.info("pipeline: %s already done (%s)", name, stage_dir)
      continue
    log.info("pipeline: running %s (%s) in %s", name, spec, stage_dir)
    t0 = time.perf_counter()
    run_stage(stage_cfg, stage_dir)
    timings[name] = time.perf_counter() - t0
    if jax.process_index() == 0:
      fs.append_text(fs.join(workdir, "timings.tsv"), f"{name}\t{timings[name]:.1f}\n")
  return timings
