"""Start-of-run checks every stage kind shares; each problem names the key that causes it.

A stage's own checks live with the stage (`check_<kind>_config` in its module), dispatched from
the stage table (`train/stages.py`), so this module imports no stage and no stage imports another.
"""
from __future__ import annotations

import os
from typing import Any


class ConfigError(ValueError):
  pass


def need(cfg, key: str, where: str = ""):
  """cfg[key], or a ConfigError naming `config.<where><key>`."""
  if key not in cfg:
    raise ConfigError(f"config.{where}{key}: missing")
  return cfg[key]


def need_sections(cfg, keys) -> None:
  for key in keys:
    need(cfg, key)


def need_positive(section, keys, where: str, *, allow_zero: bool = False) -> None:
  """Each `section[key]` > 0 (>= 0 with allow_zero), or a ConfigError naming `config.<where>.<key>`."""
  for key in keys:
    value = need(section, key, f"{where}.")
    if not (value >= 0 if allow_zero else value > 0):
      raise ConfigError(f"config.{where}.{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def check_checkpoint_dir(path: str, key: str) -> None:
  if not os.path.exists(os.path.join(path, "config.json")):
    raise ConfigError(f"config.{key}: {path!r} has no config.json (not a checkpoint dir)")


def check_model(cfg: Any) -> None:
  """model.init_from (an HF-format checkpoint dir) or a known model.preset."""
  m = need(cfg, "model")
  if not m.get("init_from") and not m.get("preset"):
    raise ConfigError("config.model: set model.init_from (a checkpoint dir) or model.preset")
  if m.get("preset"):
    from r1jax.models.presets import PRESETS

    if m.preset not in PRESETS:
      raise ConfigError(f"config.model.preset: unknown preset {m.preset!r}; known: {sorted(PRESETS)}")
  if m.get("init_from"):
    check_checkpoint_dir(m.init_from, "model.init_from")


def check_data_kind(cfg: Any, kind: str, what: str) -> None:
  if cfg.data.kind != kind:
    raise ConfigError(f"config.data.kind: {what} needs {kind!r} data, got {cfg.data.kind!r}")


def check_training(cfg: Any, *, data_kind: str, what: str, train_keys=()) -> None:
  """What every trained stage needs: model, tokenizer, data of `data_kind`, an optimiser with a
  positive learning rate, and positive `train.<train_keys>`."""
  need_sections(cfg, ("model", "tokenizer", "data", "optim", "train"))
  check_model(cfg)
  check_data_kind(cfg, data_kind, what)
  need_positive(cfg.optim, ("learning_rate",), "optim")
  need_positive(cfg.train, train_keys, "train")
