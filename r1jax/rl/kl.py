"""Per-token estimators of KL(pi_theta || pi_ref) from log-probs of the sampled tokens.

With log_ratio = log pi_ref - log pi_theta (per token, on tokens sampled from pi_theta):
  k1 = -log_ratio                          (unbiased, high variance, can be negative)
  k2 = 0.5 * log_ratio**2                  (biased, low variance)
  k3 = exp(log_ratio) - log_ratio - 1      (unbiased, >= 0; the paper's eq. 2,
                                            pi_ref/pi_theta - log(pi_ref/pi_theta) - 1)
As verl does, the log-ratio is clamped to +-clamp before use and k3 is capped at k3_max so one
token whose log-probs have drifted far apart cannot blow up the loss (the gradient there is 0).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

KL_KINDS = ("k1", "k2", "k3")


def kl_estimate(logprobs: jax.Array, ref_logprobs: jax.Array, kind: str = "k3",
                clamp: float | None = 20.0, k3_max: float | None = 10.0) -> jax.Array:
  """Per-token KL estimate, same shape as `logprobs`; differentiable w.r.t. both inputs."""
  if kind not in KL_KINDS:
    raise ValueError(f"kl_estimate: kind must be one of {KL_KINDS}, got {kind!r}")
  if jnp.shape(logprobs) != jnp.shape(ref_logprobs):
    raise ValueError(f"kl_estimate: logprobs {jnp.shape(logprobs)} and ref_logprobs "
                     f"{jnp.shape(ref_logprobs)} must have the same shape")
  log_ratio = ref_logprobs - logprobs
  if clamp is not None:
    log_ratio = jnp.clip(log_ratio, -clamp, clamp)
  if kind == "k1":
    return -log_ratio
  if kind == "k2":
    return 0.5 * jnp.square(log_ratio)
  k3 = jnp.exp(log_ratio) - log_ratio - 1.0
  if k3_max is not None:
    k3 = jnp.clip(k3, -k3_max, k3_max)
  return k3
