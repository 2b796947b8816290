"""Group-relative advantages (the paper's eq. 3) and the KL-in-reward penalty.

A_i = (r_i - mean(r_group)) / (std(r_group) + eps), computed with segment ops over an explicit
`group_ids` array, so membership never depends on the order or shape of the batch.

Choice of std: `ddof=1` (the default) is the unbiased sample std, what torch.std gives and what
TRL and verl use; `ddof=0` gives the population std. A group whose rewards are all equal (this
includes a group of one output) gets advantage exactly 0, never NaN, and is counted in
`frac_zero_std_groups`. Group ids that no output uses (padding in `num_groups`) are ignored.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from r1jax.rl.kl import kl_estimate


def _check_group_ids(group_ids: jax.Array, num_groups: int, n: int):
  if not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
    raise ValueError(f"group_advantages: num_groups must be a positive int, got {num_groups!r}")
  if jnp.shape(group_ids) != (n,):
    raise ValueError(f"group_advantages: group_ids must have shape ({n},) like rewards, "
                     f"got {jnp.shape(group_ids)}")
  if not jnp.issubdtype(jnp.result_type(group_ids), jnp.integer):
    raise ValueError(f"group_advantages: group_ids must be integers, got "
                     f"{jnp.result_type(group_ids)}")
  if not isinstance(group_ids, jax.core.Tracer):  # concrete: check the range now.
    ids = np.asarray(group_ids)
    if ids.size and (ids.min() < 0 or ids.max() >= num_groups):
      raise ValueError(f"group_advantages: group_ids must lie in [0, {num_groups}), got range "
                       f"[{ids.min()}, {ids.max()}]")


def all_equal_groups(rewards: jax.Array, group_ids: jax.Array, num_groups: int) -> jax.Array:
  """[num_groups] bool: the group has rows and all its rewards are equal. Decided exactly
  (max == min), not from a float std that rounding can make 1e-17: such groups get advantage exactly
  0, and dynamic sampling drops them."""
  rewards = jnp.asarray(rewards)
  group_max = jax.ops.segment_max(rewards, group_ids, num_segments=num_groups)
  group_min = jax.ops.segment_min(rewards, group_ids, num_segments=num_groups)
  present = jax.ops.segment_sum(jnp.ones_like(rewards), group_ids, num_segments=num_groups) > 0
  return present & (group_max == group_min)


def group_advantages(rewards: jax.Array, group_ids: jax.Array, num_groups: int, *,
                     scale_by_std: bool = True, eps: float = 1e-6, ddof: int = 1
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Advantages [N] and statistics for rewards [N] of outputs in groups `group_ids` [N].

  scale_by_std=False is Dr. GRPO (centre only). Returns (advantages, stats) where stats holds
  reward/advantage summaries and the number and fraction of zero-std groups.
  """
  if jnp.ndim(rewards) != 1:
    raise ValueError(f"group_advantages: rewards must be 1-D [N], got shape {jnp.shape(rewards)}")
  if ddof not in (0, 1):
    raise ValueError(f"group_advantages: ddof must be 0 or 1, got {ddof!r}")
  n = jnp.shape(rewards)[0]
  _check_group_ids(group_ids, num_groups, n)
  rewards = jnp.asarray(rewards)
  if not jnp.issubdtype(rewards.dtype, jnp.floating):
    rewards = rewards.astype(jnp.float32)
  segment_sum = lambda x: jax.ops.segment_sum(x, group_ids, num_segments=num_groups)

  counts = segment_sum(jnp.ones_like(rewards))  # [num_groups]
  present = counts > 0
  mean = segment_sum(rewards) / jnp.maximum(counts, 1.0)
  centred = rewards - mean[group_ids]  # [N]
  var = segment_sum(jnp.square(centred)) / jnp.maximum(counts - ddof, 1.0)
  std = jnp.sqrt(var)
  zero_std = all_equal_groups(rewards, group_ids, num_groups)  # [num_groups]

  advantages = centred / (std[group_ids] + eps) if scale_by_std else centred
  advantages = jnp.where(zero_std[group_ids], 0.0, advantages).astype(rewards.dtype)

  num_present = jnp.maximum(jnp.sum(present), 1)
  num_zero_std = jnp.sum(zero_std)
  stats = {
      "reward_mean": jnp.mean(rewards),
      "reward_std": jnp.std(rewards),
      "reward_min": jnp.min(rewards),
      "reward_max": jnp.max(rewards),
      "group_reward_std_mean": jnp.sum(jnp.where(present, std, 0.0)) / num_present,
      "advantage_mean": jnp.mean(advantages),
      "advantage_std": jnp.std(advantages),
      "advantage_min": jnp.min(advantages),
      "advantage_max": jnp.max(advantages),
      "num_zero_std_groups": num_zero_std,
      "frac_zero_std_groups": num_zero_std / num_present,
  }
  return advantages, stats


def kl_penalized_rewards(rewards: jax.Array, logprobs: jax.Array, ref_logprobs: jax.Array,
                         completion_mask: jax.Array, beta: float, *, kind: str = "k3",
                         clamp: float | None = 20.0, k3_max: float | None = 10.0
                         ) -> tuple[jax.Array, jax.Array]:
  """KL-in-reward mode: r_i - beta * sum_t KL_t over the completion tokens of output i.

  `logprobs` are those the outputs were sampled with ([N, T], usually the old policy's); pass
  cfg.kl_estimator as `kind` (the trainer's job) to use the configured estimator.
  No gradient flows through the penalty: it is part of the reward. Returns (rewards [N],
  sequence KL [N]).
  """
  if jnp.shape(logprobs) != jnp.shape(completion_mask) or jnp.ndim(logprobs) != 2:
    raise ValueError(f"kl_penalized_rewards: logprobs {jnp.shape(logprobs)} and completion_mask "
                     f"{jnp.shape(completion_mask)} must both be [N, T]")
  if jnp.shape(rewards) != jnp.shape(logprobs)[:1]:
    raise ValueError(f"kl_penalized_rewards: rewards {jnp.shape(rewards)} must be [N] with "
                     f"N = {jnp.shape(logprobs)[0]}")
  kl = kl_estimate(jax.lax.stop_gradient(logprobs), jax.lax.stop_gradient(ref_logprobs),
                   kind=kind, clamp=clamp, k3_max=k3_max)  # [N, T]
  mask = jnp.asarray(completion_mask).astype(kl.dtype)
  sequence_kl = jnp.sum(kl * mask, axis=-1)  # [N]
  return rewards - beta * sequence_kl, sequence_kl
