"""Stage kinds -> runner functions (imported lazily: a stage pulls in only what it needs)."""
from __future__ import annotations

import importlib

RUNNERS = {
    "sft": "r1jax.train.sft_stage:run_sft",
    "grpo": "r1jax.train.rl_stage:run_rl",
    "rejection": "r1jax.train.rejection_stage:run_rejection",
    "evaluate": "r1jax.train.evaluate_stage:run_evaluate",
    "reward_model": "r1jax.train.reward_model_stage:run_reward_model",
    "pipeline": "r1jax.train.pipeline:run_pipeline",
}


def runner_for(stage_kind: str):
  if stage_kind not in RUNNERS:
    raise ValueError(f"config.kind: unknown stage kind {stage_kind!r}; known: {sorted(RUNNERS)}")
  module, fn = RUNNERS[stage_kind].split(":")
  return getattr(importlib.import_module(module), fn)


def validate(cfg) -> None:
  """Checks a stage config before anything runs; errors name the offending key."""
  from r1jax.train.config_check import check_config

  check_config(cfg)
