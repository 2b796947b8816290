"""`python -m r1jax --config=experiments/<stage>.py:<preset> --workdir=DIR [--config.a.b=v ...]`.

The config's `stage` picks the runner. Configs are validated before any work starts; an unknown
or mistyped key is named. Running again on the same workdir resumes.
"""
from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:preset]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, exports)")

RUNNERS = {
    "sft": "r1jax.train.sft_stage:run_sft",
    "grpo": "r1jax.train.rl_stage:run_rl",
    "rejection": "r1jax.train.rejection_stage:run_rejection",
}


def runner_for(stage_kind: str):
  import importlib

  if stage_kind not in RUNNERS:
    raise ValueError(f"config.kind: unknown stage kind {stage_kind!r}; known: {sorted(RUNNERS)}")
  module, fn = RUNNERS[stage_kind].split(":")
  return getattr(importlib.import_module(module), fn)


def validate(cfg) -> None:
  """Checks a stage config before anything runs; errors name the offending key."""
  from r1jax.train.config_check import check_config

  check_config(cfg)


def run_config(cfg, workdir: str):
  from r1jax.train.common import start_distributed

  validate(cfg)
  start_distributed(cfg)
  if cfg.get("compilation_cache", True):
    import jax

    # Under the workdir (never $HOME) unless compilation_cache_dir names a shared one.
    cache = cfg.get("compilation_cache_dir", "") or os.path.join(workdir, ".jax_cache")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  return runner_for(cfg.kind)(cfg, workdir)


def main(argv):
  del argv
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  cfg = _CONFIG.value
  if cfg is None:
    raise app.UsageError("--config is required, e.g. --config=experiments/r1_zero.py:tiny")
  workdir = _WORKDIR.value or cfg.get("workdir", None)
  if not workdir:
    raise app.UsageError("--workdir is required (or set config.workdir)")
  run_config(cfg, workdir)


def run():
  app.run(main)


if __name__ == "__main__":
  sys.exit(run())
