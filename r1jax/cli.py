"""`python -m r1jax --config=experiments/<stage>.py:<preset> --workdir=DIR [--config.a.b=v ...]`.

The config's `kind` picks the stage (r1jax.train.stages). Configs are validated before any work starts; an unknown
or mistyped key is named. Running again on the same workdir resumes.
"""
from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from r1jax import fs
from r1jax.train.stages import run_stage, validate

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:preset]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, exports)")


def run_config(cfg, workdir: str):
  from r1jax.train.common import start_distributed

  checked = validate(cfg)  # before any device is touched: a bad key fails in seconds
  start_distributed(cfg)
  if cfg.get("compilation_cache", True):
    import jax

    # Under the workdir (never $HOME) unless compilation_cache_dir names a shared one.
    cache = cfg.get("compilation_cache_dir", "") or fs.join(workdir, ".jax_cache")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  return run_stage(cfg, workdir, checked)


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
