"""GRPO hyper-parameters: one frozen dataclass, validated on construction, plus named recipes.

The dataclass defaults are the DeepSeek-R1 recipe (Nature version, reasoning RL = stage 2):
G = 16 outputs per question, 32 questions per step, beta = 0.001 with the k3 estimator in the
loss, clip epsilon = 10, rollout temperature 1.0, one pass over each 8,192-output rollout split
into 16 minibatches, reference policy replaced by the current policy every 400 steps. Other
recipes (DeepSeekMath GRPO, DAPO, Dr. GRPO, a tiny CPU one) only override fields.

A recipe's learning rate (R1: 3e-6) is an optimiser setting, so it is not a GRPOConfig field:
`LEARNING_RATES[recipe]` seeds a stage config's `optim.learning_rate`, its one home.

A stage config's `grpo` section holds exactly these fields; the stage builds the GRPOConfig once,
when the config is validated (`train.rl_stage.check_grpo_config`), and hands it to the runner.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from r1jax.rl.kl import KL_KINDS as KL_ESTIMATORS  # defined once, with the estimators
KL_MODES = ("loss", "reward")
# seq_mean: per-sequence token mean, then mean over sequences (the paper's 1/|o_i|).
# token_mean: one token mean over the whole batch (DAPO).
# seq_sum_norm: per-sequence token sum / a constant max length, mean over sequences (Dr. GRPO).
LOSS_AGGREGATIONS = ("seq_mean", "token_mean", "seq_sum_norm")


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  """Everything the GRPO objective and its outer loop need; defaults = DeepSeek-R1 stage 2."""

  # Rollout shape.
  num_generations: int = 16  # G outputs per question.
  prompts_per_step: int = 32  # questions per optimizer step (32 x 16 = 512 outputs).
  rollout_temperature: float = 1.0
  max_completion_length: int = 32768
  # One rollout = num_minibatches optimizer steps of prompts_per_step whole groups each
  # (16 x 512 = 8,192 outputs in the paper), so minibatches always split at group boundaries.
  num_minibatches: int = 16
  num_epochs: int = 1  # passes over each rollout (the paper's mu).
  # Rows per gradient-accumulation micro-batch of an update, and of the reference log-prob pass;
  # 0 = the whole minibatch at once. The update is the same either way (the loss uses the
  # minibatch's token / sequence counts), only peak memory changes.
  micro_batch_size: int = 0
  # Advantages (eq. 3).
  scale_rewards_by_std: bool = True  # False = Dr. GRPO (centre only).
  advantage_eps: float = 1e-6
  advantage_std_ddof: int = 1  # 1 = unbiased sample std (torch.std, TRL, verl); 0 = population.
  # Clipped surrogate.
  clip_eps_low: float = 10.0
  clip_eps_high: float = 10.0
  dual_clip_c: float | None = None  # dual-clip bound for A < 0 (> 1); None = off.
  log_ratio_clamp: float = 20.0  # |log pi_theta - log pi_old| cap before exp, keeps ratios finite.
  # KL to the reference policy (eq. 2).
  beta: float = 0.001
  kl_estimator: str = "k3"
  kl_mode: str = "loss"  # "loss": + beta * KL per token; "reward": r - beta * sum_t KL.
  kl_log_ratio_clamp: float = 20.0  # as verl: log-ratio clamped to +-20 ...
  kl_k3_max: float = 10.0  # ... and k3 capped at 10.
  ref_update_interval: int = 400  # steps between reference <- policy resets; 0 = never.
  # Aggregation.
  loss_aggregation: str = "seq_mean"
  max_len_norm: int | None = None  # seq_sum_norm constant; None = max_completion_length.
  # Dynamic sampling (DAPO): draw more prompt batches, keep only groups whose rewards differ,
  # until the rollout is full or after max_draws draws (then topped up with zero-std groups).
  dynamic_sampling: bool = False
  dynamic_sampling_max_draws: int = 4
  # Fused log-prob kernel.
  logprob_chunk_size: int = 1024  # tokens per chunk of the [chunk, V] logits.

  def __post_init__(self):
    _validate(self)

  def replace(self, **overrides: Any) -> "GRPOConfig":
    """A copy with `overrides` applied (and validated)."""
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
    if unknown:
      raise ValueError(f"GRPOConfig has no field(s) {unknown}")
    return dataclasses.replace(self, **overrides)

  # Whether KL is on, decided here only: a reference policy exists iff beta > 0; its KL enters
  # the loss (per token) or the reward (per sequence) by kl_mode.
  @property
  def uses_reference(self) -> bool:
    return self.beta > 0

  @property
  def kl_in_loss(self) -> bool:
    return self.uses_reference and self.kl_mode == "loss"

  @property
  def kl_in_reward(self) -> bool:
    return self.uses_reference and self.kl_mode == "reward"

  @property
  def prompts_per_rollout(self) -> int:
    return self.prompts_per_step * self.num_minibatches

  @property
  def outputs_per_step(self) -> int:
    return self.num_generations * self.prompts_per_step

  @property
  def outputs_per_rollout(self) -> int:
    return self.outputs_per_step * self.num_minibatches

  @property
  def length_normaliser(self) -> int:
    """The Dr. GRPO constant: max_len_norm, else max_completion_length."""
    return self.max_len_norm if self.max_len_norm is not None else self.max_completion_length


def _fail(field: str, message: str, value: Any):
  raise ValueError(f"GRPOConfig.{field} {message}, got {value!r}")


def _validate(cfg: GRPOConfig):
  for name in ("num_generations", "prompts_per_step", "max_completion_length", "num_minibatches",
               "num_epochs", "logprob_chunk_size", "dynamic_sampling_max_draws"):
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      _fail(name, "must be a positive int", value)
  for name in ("rollout_temperature", "advantage_eps", "log_ratio_clamp",
               "kl_log_ratio_clamp", "kl_k3_max"):
    value = getattr(cfg, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
      _fail(name, "must be a positive number", value)
  for name in ("clip_eps_low", "clip_eps_high", "beta"):
    value = getattr(cfg, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
      _fail(name, "must be a number >= 0", value)
  micro = cfg.micro_batch_size
  if isinstance(micro, bool) or not isinstance(micro, int) or micro < 0:
    _fail("micro_batch_size", "must be an int >= 0 (0 = the whole minibatch)", micro)
  rows = cfg.prompts_per_step * cfg.num_generations
  if micro and rows % micro:
    _fail("micro_batch_size", f"must divide a minibatch's prompts_per_step x num_generations = {rows} rows", micro)
  if not isinstance(cfg.dynamic_sampling, bool):
    _fail("dynamic_sampling", "must be a bool", cfg.dynamic_sampling)
  if cfg.advantage_std_ddof not in (0, 1):
    _fail("advantage_std_ddof", "must be 0 (population std) or 1 (sample std)",
          cfg.advantage_std_ddof)
  if cfg.dual_clip_c is not None and not (
      isinstance(cfg.dual_clip_c, (int, float)) and cfg.dual_clip_c > 1):
    _fail("dual_clip_c", "must be None (off) or a number > 1", cfg.dual_clip_c)
  if cfg.kl_estimator not in KL_ESTIMATORS:
    _fail("kl_estimator", f"must be one of {KL_ESTIMATORS}", cfg.kl_estimator)
  if cfg.kl_mode not in KL_MODES:
    _fail("kl_mode", f"must be one of {KL_MODES}", cfg.kl_mode)
  if cfg.loss_aggregation not in LOSS_AGGREGATIONS:
    _fail("loss_aggregation", f"must be one of {LOSS_AGGREGATIONS}", cfg.loss_aggregation)
  if isinstance(cfg.ref_update_interval, bool) or not isinstance(cfg.ref_update_interval, int) \
      or cfg.ref_update_interval < 0:
    _fail("ref_update_interval", "must be an int >= 0 (0 = never)", cfg.ref_update_interval)
  if cfg.max_len_norm is not None and (
      isinstance(cfg.max_len_norm, bool) or not isinstance(cfg.max_len_norm, int)
      or cfg.max_len_norm < 1):
    _fail("max_len_norm", "must be None or a positive int", cfg.max_len_norm)


def r1_recipe() -> GRPOConfig:
  """DeepSeek-R1 reasoning RL (stage 2): the dataclass defaults, spelled out."""
  return GRPOConfig(num_generations=16, prompts_per_step=32, beta=0.001, kl_estimator="k3",
                    kl_mode="loss", clip_eps_low=10.0, clip_eps_high=10.0,
                    rollout_temperature=1.0, num_minibatches=16, num_epochs=1,
                    ref_update_interval=400, loss_aggregation="seq_mean")


def r1_stage4_recipe() -> GRPOConfig:
  """DeepSeek-R1 RL for all scenarios (stage 4): as stage 2 with rollout temperature 0.7."""
  return r1_recipe().replace(rollout_temperature=0.7)


def deepseekmath_grpo_recipe() -> GRPOConfig:
  """The original GRPO (DeepSeekMath): G = 64, eps = 0.2, beta = 0.04 (lr 1e-6)."""
  return GRPOConfig(num_generations=64, prompts_per_step=16, beta=0.04, clip_eps_low=0.2,
                    clip_eps_high=0.2, num_minibatches=1, max_completion_length=1024,
                    ref_update_interval=0)


def dapo_recipe() -> GRPOConfig:
  """DAPO: clip-higher (0.2 / 0.28), token-mean aggregation, no KL term (lr 1e-6)."""
  return r1_recipe().replace(clip_eps_low=0.2, clip_eps_high=0.28, beta=0.0,
                             loss_aggregation="token_mean", ref_update_interval=0)


def dr_grpo_recipe() -> GRPOConfig:
  """Dr. GRPO: no std scaling of advantages, per-sequence sums over a constant length, no KL."""
  return r1_recipe().replace(scale_rewards_by_std=False, loss_aggregation="seq_sum_norm", beta=0.0,
                             clip_eps_low=0.2, clip_eps_high=0.2, ref_update_interval=0)


def tiny_recipe() -> GRPOConfig:
  """CPU smoke runs: R1 objective with tiny rollouts."""
  return r1_recipe().replace(num_generations=4, prompts_per_step=2, num_minibatches=2,
                             max_completion_length=64, logprob_chunk_size=64)


RECIPES = {
    "r1": r1_recipe,
    "r1_stage4": r1_stage4_recipe,
    "deepseekmath": deepseekmath_grpo_recipe,
    "dapo": dapo_recipe,
    "dr_grpo": dr_grpo_recipe,
    "tiny": tiny_recipe,
}
# Each recipe's peak learning rate (the optimiser's; a stage config keeps it in optim.learning_rate).
LEARNING_RATES = {"r1": 3e-6, "r1_stage4": 3e-6, "deepseekmath": 1e-6, "dapo": 1e-6, "dr_grpo": 3e-6,
                  "tiny": 3e-6}


def get_recipe(name: str, **overrides: Any) -> GRPOConfig:
  """The recipe called `name`, with `overrides` applied."""
  if name not in RECIPES:
    raise ValueError(f"unknown GRPO recipe {name!r}; known: {sorted(RECIPES)}")
  return RECIPES[name]().replace(**overrides)
