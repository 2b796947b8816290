"""The stage table: each kind's config check and runner (imported lazily: a stage pulls in only
what it needs).

`validate(cfg)` runs the kind's check, which returns what the runner needs built from the config
(the GRPO stage: its `GRPOConfig`) or None; `run_stage(cfg, workdir)` validates, then calls the
runner with that object, so every typed config is built once, at validation.
"""
from __future__ import annotations

import importlib
from typing import Any, NamedTuple


class StageKind(NamedTuple):
  module: str
  check: str  # check(cfg) -> the runner's typed config or None; raises ConfigError
  run: str  # run(cfg, workdir, checked) -> the stage's result


STAGES = {
    "sft": StageKind("r1jax.train.sft_stage", "check_sft_config", "run_sft"),
    "grpo": StageKind("r1jax.train.rl_stage", "check_grpo_config", "run_rl"),
    "rejection": StageKind("r1jax.train.rejection_stage", "check_rejection_config", "run_rejection"),
    "evaluate": StageKind("r1jax.train.evaluate_stage", "check_evaluate_config", "run_evaluate"),
    "reward_model": StageKind("r1jax.train.reward_model_stage", "check_reward_model_config", "run_reward_model"),
    "pipeline": StageKind("r1jax.train.pipeline", "check_pipeline_config", "run_pipeline"),
}


def _stage(cfg) -> StageKind:
  from r1jax.train.config_check import ConfigError

  if "kind" not in cfg:
    raise ConfigError("config.kind: missing")
  if cfg.kind not in STAGES:
    raise ConfigError(f"config.kind: unknown stage kind {cfg.kind!r}; known: {sorted(STAGES)}")
  return STAGES[cfg.kind]


def _fn(stage: StageKind, name: str):
  return getattr(importlib.import_module(stage.module), name)


def validate(cfg) -> Any:
  """Checks a stage config before anything runs (errors name the offending key); returns the
  runner's typed config (or None)."""
  stage = _stage(cfg)
  return _fn(stage, stage.check)(cfg)


_UNCHECKED = object()


def run_stage(cfg, workdir: str, checked: Any = _UNCHECKED) -> Any:
  """Runs `cfg`'s stage in `workdir` (resuming what a previous run left), validating it first
  unless `checked` (what `validate(cfg)` returned) is given."""
  stage = _stage(cfg)
  if checked is _UNCHECKED:
    checked = _fn(stage, stage.check)(cfg)
  return _fn(stage, stage.run)(cfg, workdir, checked)
