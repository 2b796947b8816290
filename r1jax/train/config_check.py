"""Start-of-run validation of stage configs: every problem names the key that causes it."""
from __future__ import annotations

from typing import Any

REQUIRED = {
    "sft": ("model", "data", "optim", "train", "tokenizer"),
    "grpo": ("model", "data", "optim", "train", "tokenizer", "grpo", "rewards", "sampling"),
    "rejection": ("model", "tokenizer", "data", "sampling", "rejection", "filters", "mix", "output"),
    "evaluate": ("checkpoints", "eval", "data", "sampling"),
    "reward_model": ("model", "tokenizer", "data", "optim", "train", "rm"),
    "pipeline": ("stages",),
}


class ConfigError(ValueError):
  pass


def _need(cfg, key: str, where: str):
  if key not in cfg:
    raise ConfigError(f"config.{where}{key}: missing")
  return cfg[key]


def check_config(cfg: Any) -> None:
  kind = _need(cfg, "kind", "")
  if kind not in REQUIRED:
    raise ConfigError(f"config.kind: unknown stage kind {kind!r}; known: {sorted(REQUIRED)}")
  for key in REQUIRED[kind]:
    _need(cfg, key, "")
  if kind == "pipeline":
    names = [s[0] for s in cfg.stages]
    if len(set(names)) != len(names):
      raise ConfigError(f"config.stages: stage names repeat: {names}")
    return  # each stage is validated with its own config when it starts
  if kind == "evaluate":
    import os

    from r1jax.train.evaluate_stage import parse_checkpoints

    try:
      checkpoints = parse_checkpoints(cfg.checkpoints)
    except ValueError as e:
      raise ConfigError(str(e)) from e
    if not checkpoints:
      raise ConfigError("config.checkpoints: give at least one label=directory")
    for label, path in checkpoints.items():
      if not os.path.exists(os.path.join(path, "config.json")):
        raise ConfigError(f"config.checkpoints.{label}: {path!r} has no config.json (not a checkpoint dir)")
    return
  m = cfg.model
  if not m.get("init_from") and not m.get("preset"):
    raise ConfigError("config.model: set model.init_from (a checkpoint dir) or model.preset")
  if m.get("preset"):
    from r1jax.models.presets import PRESETS

    if m.preset not in PRESETS:
      raise ConfigError(f"config.model.preset: unknown preset {m.preset!r}; known: {sorted(PRESETS)}")
  if m.get("init_from"):
    import os

    if not os.path.exists(os.path.join(m.init_from, "config.json")):
      raise ConfigError(f"config.model.init_from: {m.init_from!r} has no config.json (not a checkpoint dir)")
  if kind == "sft":
    if float(_need(cfg.optim, "learning_rate", "optim.")) <= 0:
      raise ConfigError(f"config.optim.learning_rate: must be > 0, got {cfg.optim.learning_rate}")
    for key in ("steps", "grad_accum_steps", "log_every", "checkpoint_every"):
      if int(_need(cfg.train, key, "train.")) <= 0:
        raise ConfigError(f"config.train.{key}: must be > 0, got {cfg.train[key]}")
    if cfg.data.kind != "sft":
      raise ConfigError(f"config.data.kind: an sft stage needs 'sft' data, got {cfg.data.kind!r}")
    if cfg.data.batch_size % int(cfg.train.grad_accum_steps):
      raise ConfigError(f"config.data.batch_size={cfg.data.batch_size} is not divisible by "
                        f"train.grad_accum_steps={cfg.train.grad_accum_steps}")
  if kind == "rejection":
    from r1jax.train.rejection_stage import check_rejection_config

    check_rejection_config(cfg)
  if kind == "reward_model":
    from r1jax.train.reward_model_stage import check_reward_model_config

    check_reward_model_config(cfg)
  if kind == "grpo":
    from r1jax.rl.config import GRPOConfig
    from r1jax.rewards import registry

    try:
      g = GRPOConfig(**dict(cfg.grpo))
    except (TypeError, ValueError) as e:
      raise ConfigError(f"config.grpo: {e}") from e
    if cfg.data.batch_size != g.prompts_per_step * g.num_minibatches:
      raise ConfigError(f"config.data.batch_size={cfg.data.batch_size} must equal grpo.prompts_per_step * "
                        f"grpo.num_minibatches = {g.prompts_per_step * g.num_minibatches} (prompts per rollout)")
    if cfg.data.kind != "rl":
      raise ConfigError(f"config.data.kind: a grpo stage needs 'rl' data, got {cfg.data.kind!r}")
    known = set(registry.available())
    for name in cfg.rewards.weights:
      if name not in known:
        raise ConfigError(f"config.rewards.weights.{name}: unknown reward; known: {sorted(known)}")
    _check_learned_rewards(cfg.rewards)
    for key in ("rollouts", "checkpoint_every"):
      if int(_need(cfg.train, key, "train.")) <= 0:
        raise ConfigError(f"config.train.{key}: must be > 0, got {cfg.train[key]}")


def _check_learned_rewards(rewards) -> None:
  """A learned reward (helpfulness_rm, safety_rm) needs options.<name>.path: a reward model dir."""
  import os

  from r1jax.rewards.model import META_FILE, RM_KINDS

  options = rewards.get("options", {}) or {}
  for name in rewards.weights:
    if name not in {f"{k}_rm" for k in RM_KINDS}:
      continue
    path = (options.get(name, None) or {}).get("path", "")
    if not path:
      raise ConfigError(f"config.rewards.options.{name}.path: set it to a reward model directory "
                        "(a reward_model stage's <workdir>/final)")
    if not os.path.exists(os.path.join(path, META_FILE)):
      raise ConfigError(f"config.rewards.options.{name}.path: {path!r} has no {META_FILE} (not a reward model dir)")
