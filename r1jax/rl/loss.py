"""The GRPO objective (the paper's eq. 1-2) on per-token log-probs, with its metrics.

Per completion token t of output i (A_i its advantage, eps_low/eps_high the clip range):
  ratio_t  = exp(logp_t - old_logp_t)                      (log-ratio clamped to +-log_ratio_clamp)
  pg_t     = -min(ratio_t * A_i, clip(ratio_t, 1 - eps_low, 1 + eps_high) * A_i)
  pg_t     = min(pg_t, -c * A_i) if A_i < 0 and dual clip c is on
  loss_t   = pg_t + beta * KL_t(pi_theta || pi_ref)         (kl_mode == "loss")
Aggregation over the completion mask m (the stop token included, padding never):
  seq_mean     : sum_i [ sum_t m loss_t / |o_i| ] / num_sequences          (paper, default)
  token_mean   : sum_{i,t} m loss_t / num_tokens                           (DAPO)
  seq_sum_norm : sum_{i,t} m loss_t / (num_sequences * max_len_norm)       (Dr. GRPO)

Gradient accumulation: every mode is a sum over tokens divided by a normaliser. Pass the
full batch's `total_tokens` / `total_sequences` when the batch is split into microbatches; the
microbatch losses (and gradients) then add up exactly to the full-batch ones. By default they are
counted from this batch (sequences with at least one completion token).

`old_logprobs`, `ref_logprobs` and `advantages` are data: no gradient flows into them. Values at
masked-out positions are ignored entirely (even inf/NaN), in value and gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.rl.config import GRPOConfig
from r1jax.rl.kl import kl_estimate


def _check_shapes(logprobs, old_logprobs, ref_logprobs, advantages, completion_mask, truncated,
                  entropy, cfg):
  if not isinstance(cfg, GRPOConfig):
    raise TypeError(f"grpo_loss: cfg must be a GRPOConfig, got {type(cfg).__name__}")
  shape = jnp.shape(logprobs)
  if len(shape) != 2:
    raise ValueError(f"grpo_loss: logprobs must be [B, T], got shape {shape}")
  named = {"old_logprobs": old_logprobs, "ref_logprobs": ref_logprobs,
           "completion_mask": completion_mask, "entropy": entropy}
  for name, value in named.items():
    if value is not None and jnp.shape(value) != shape:
      raise ValueError(f"grpo_loss: {name} must have the shape of logprobs {shape}, "
                       f"got {jnp.shape(value)}")
  for name, value in {"advantages": advantages, "truncated": truncated}.items():
    if value is not None and jnp.shape(value) != shape[:1]:
      raise ValueError(f"grpo_loss: {name} must be [B] = {shape[:1]}, got {jnp.shape(value)}")
  if ref_logprobs is None and cfg.kl_in_loss:
    raise ValueError(f"grpo_loss: ref_logprobs is None but GRPOConfig.beta = {cfg.beta} with "
                     "kl_mode='loss' needs them (set beta=0 or pass reference log-probs)")


def grpo_loss(logprobs: jax.Array, old_logprobs: jax.Array, ref_logprobs: jax.Array | None,
              advantages: jax.Array, completion_mask: jax.Array, cfg: GRPOConfig, *,
              max_len_norm: int | None = None, total_tokens: jax.Array | float | None = None,
              total_sequences: jax.Array | float | None = None,
              truncated: jax.Array | None = None, entropy: jax.Array | None = None
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """GRPO loss (to minimise) for logprobs [B, T] of B outputs; returns (loss, metrics).

  max_len_norm overrides cfg.length_normaliser for "seq_sum_norm". total_tokens /
  total_sequences are the full batch's counts when this is one of several microbatches.
  truncated [B] bool and entropy [B, T] only feed metrics.
  """
  _check_shapes(logprobs, old_logprobs, ref_logprobs, advantages, completion_mask, truncated,
                entropy, cfg)
  dtype = jnp.result_type(logprobs)
  mask = jnp.asarray(completion_mask).astype(bool)  # [B, T]
  maskf = mask.astype(dtype)
  # Sanitise masked positions first, so garbage there reaches neither value nor gradient.
  logprobs = jnp.where(mask, logprobs, 0.0)
  old_logprobs = jnp.where(mask, jax.lax.stop_gradient(old_logprobs), 0.0)
  seq_lengths = jnp.sum(maskf, axis=-1)  # [B]
  valid_seq = seq_lengths > 0
  adv = jnp.where(valid_seq, jax.lax.stop_gradient(jnp.asarray(advantages, dtype)), 0.0)
  adv_t = adv[:, None]  # [B, 1]

  log_ratio = jnp.clip(logprobs - old_logprobs, -cfg.log_ratio_clamp, cfg.log_ratio_clamp)
  ratio = jnp.exp(log_ratio)  # [B, T]
  clipped_ratio = jnp.clip(ratio, 1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high)
  pg = -jnp.minimum(ratio * adv_t, clipped_ratio * adv_t)  # [B, T]
  if cfg.dual_clip_c is not None:
    dual_bound = -cfg.dual_clip_c * adv_t
    dual_active = (adv_t < 0) & (pg > dual_bound)
    pg = jnp.where(adv_t < 0, jnp.minimum(pg, dual_bound), pg)

  kl = None
  if ref_logprobs is not None:
    ref = jnp.where(mask, jax.lax.stop_gradient(ref_logprobs), 0.0)
    kl = kl_estimate(logprobs, ref, kind=cfg.kl_estimator, clamp=cfg.kl_log_ratio_clamp,
                     k3_max=cfg.kl_k3_max)
  per_token = pg
  if kl is not None and cfg.kl_in_loss:
    per_token = pg + cfg.beta * kl

  num_tokens = jnp.sum(maskf)
  num_sequences = jnp.sum(valid_seq).astype(dtype)
  tokens_norm = jnp.maximum(num_tokens, 1.0) if total_tokens is None else total_tokens
  seqs_norm = jnp.maximum(num_sequences, 1.0) if total_sequences is None else total_sequences
  length_norm = cfg.length_normaliser if max_len_norm is None else max_len_norm

  def aggregate(x):  # [B, T] -> scalar
    masked = jnp.where(mask, x, 0.0)
    if cfg.loss_aggregation == "seq_mean":
      per_seq = jnp.sum(masked, axis=-1) / jnp.maximum(seq_lengths, 1.0)
      return jnp.sum(per_seq) / seqs_norm
    if cfg.loss_aggregation == "token_mean":
      return jnp.sum(masked) / tokens_norm
    return jnp.sum(masked) / (seqs_norm * length_norm)  # seq_sum_norm

  loss = aggregate(per_token)

  # Metrics: local to this batch, no gradient.
  sg = jax.lax.stop_gradient
  has_tokens = num_tokens > 0
  safe_tokens = jnp.maximum(num_tokens, 1.0)
  safe_seqs = jnp.maximum(num_sequences, 1.0)
  token_mean = lambda x: jnp.sum(jnp.where(mask, x, 0.0)) / safe_tokens
  token_max = lambda x: jnp.where(has_tokens, jnp.max(jnp.where(mask, x, -jnp.inf)), 0.0)
  token_min = lambda x: jnp.where(has_tokens, jnp.min(jnp.where(mask, x, jnp.inf)), 0.0)
  seq_mean = lambda x: jnp.sum(jnp.where(valid_seq, x, 0.0)) / safe_seqs
  has_seqs = num_sequences > 0
  ratio_sg, adv_sg = sg(ratio), sg(adv)
  adv_mean = seq_mean(adv_sg)
  metrics = {
      "loss": sg(loss),
      "policy_loss": sg(aggregate(pg)),
      "clip_frac_low": token_mean((ratio_sg < 1.0 - cfg.clip_eps_low) & (adv_t < 0)),
      "clip_frac_high": token_mean((ratio_sg > 1.0 + cfg.clip_eps_high) & (adv_t > 0)),
      "ratio_mean": token_mean(ratio_sg),
      "ratio_max": token_max(ratio_sg),
      "ratio_min": token_min(ratio_sg),
      "advantage_mean": adv_mean,
      "advantage_std": jnp.sqrt(seq_mean(jnp.square(adv_sg - adv_mean))),
      "advantage_min": jnp.where(has_seqs, jnp.min(jnp.where(valid_seq, adv_sg, jnp.inf)), 0.0),
      "advantage_max": jnp.where(has_seqs, jnp.max(jnp.where(valid_seq, adv_sg, -jnp.inf)), 0.0),
      # Outputs of all-equal-reward groups: group_advantages sets their advantage exactly to 0.
      "frac_zero_advantage": seq_mean(adv_sg == 0),
      "completion_length_mean": seq_mean(seq_lengths),
      "num_tokens": num_tokens,
      "num_sequences": num_sequences,
  }
  if cfg.dual_clip_c is not None:
    metrics["dual_clip_frac"] = token_mean(sg(dual_active))
  if kl is not None:
    kl_sg = sg(kl)
    metrics.update(kl_mean=token_mean(kl_sg), kl_max=token_max(kl_sg), kl_loss=sg(aggregate(kl)))
  if entropy is not None:
    metrics["entropy_mean"] = token_mean(sg(jnp.asarray(entropy, dtype)))
  if truncated is not None:
    metrics["frac_truncated"] = seq_mean(sg(jnp.asarray(truncated)).astype(dtype))
  return loss, metrics


# How each `grpo_loss` metric combines over the micro-batches of one minibatch (each computed with
# the minibatch's total_tokens / total_sequences): losses and counts add up, token / sequence means
# are weighted by the tokens / sequences behind them, extremes take the extreme of the non-empty.
_SUMMED = ("loss", "policy_loss", "kl_loss", "num_tokens", "num_sequences")
_TOKEN_MEANS = ("clip_frac_low", "clip_frac_high", "ratio_mean", "kl_mean", "entropy_mean", "dual_clip_frac")
_SEQ_MEANS = ("advantage_mean", "frac_zero_advantage", "completion_length_mean", "frac_truncated")
_TOKEN_EXTREMES = {"ratio_max": jnp.max, "kl_max": jnp.max, "ratio_min": jnp.min}
_SEQ_EXTREMES = {"advantage_max": jnp.max, "advantage_min": jnp.min}


def combine_microbatch_metrics(stacked: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """`grpo_loss` metrics of K micro-batches (each [K]) -> the minibatch's metrics, as if it had
  been one batch (advantage_std from the per-micro-batch means and spreads)."""
  tokens, seqs = stacked["num_tokens"], stacked["num_sequences"]
  weighted = lambda v, w: jnp.sum(v * w) / jnp.maximum(jnp.sum(w), 1.0)
  out = {}
  for key, v in stacked.items():
    if key in _SUMMED:
      out[key] = jnp.sum(v)
    elif key in _TOKEN_MEANS:
      out[key] = weighted(v, tokens)
    elif key in _SEQ_MEANS:
      out[key] = weighted(v, seqs)
    elif key in _TOKEN_EXTREMES or key in _SEQ_EXTREMES:
      reduce = _TOKEN_EXTREMES.get(key) or _SEQ_EXTREMES[key]
      held = (tokens if key in _TOKEN_EXTREMES else seqs) > 0
      fill = -jnp.inf if reduce is jnp.max else jnp.inf
      out[key] = jnp.where(jnp.any(held), reduce(jnp.where(held, v, fill)), 0.0)
    elif key == "advantage_std":
      mean = weighted(stacked["advantage_mean"], seqs)
      spread = jnp.square(v) + jnp.square(stacked["advantage_mean"] - mean)
      out[key] = jnp.sqrt(weighted(spread, seqs))
    else:
      raise KeyError(f"combine_microbatch_metrics: no rule for grpo_loss metric {key!r}")
  return out
