"""Supervised fine-tuning step (cold start, rejection-sampling SFT, distillation).

Packed batches (tokens, targets, loss_mask, segment_ids, positions: [B, L]); the loss is the
mean negative log-likelihood over response tokens (loss_mask), computed with the fused chunked
log-prob kernel so [B, L, V] logits never exist. Gradient accumulation scans over microbatches
and normalises by the token count of the whole batch, so accumulation never changes the result.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from r1jax.rl.logprobs import token_logprobs
from r1jax.train.state import (TrainState, accumulate_gradients, apply_gradients, merge, microbatches,
                               router_load_shape, update_router_biases)

SFT_KEYS = ("tokens", "targets", "loss_mask", "segment_ids", "positions")


def sft_nll(graphdef, params, extra, mb, *, chunk_size: int = 1024):
  """Sum of response-token NLL, token count, and the model's aux (MoE loads, balance loss)."""
  model = merge(graphdef, params, extra)
  out = model(mb["tokens"], mb["positions"], mb["segment_ids"], return_logits=False)
  targets = jnp.maximum(mb["targets"], 0)
  lp = token_logprobs(out.hidden, model.head_kernel(), targets, chunk_size=chunk_size)
  mask = mb["loss_mask"].astype(jnp.float32)
  return -(lp * mask).sum(), mask.sum(), out.aux


def make_sft_step(graphdef, tx: optax.GradientTransformation, *, grad_accum_steps: int = 1,
                  router_bias_rate: float = 0.0, chunk_size: int = 1024):
  def step(state: TrainState, batch: dict[str, jax.Array]):
    mbs = microbatches({k: batch[k] for k in SFT_KEYS}, grad_accum_steps)
    n_tokens = jnp.maximum(mbs["loss_mask"].astype(jnp.float32).sum(), 1.0)

    def loss_fn(params, mb):
      nll, _, aux = sft_nll(graphdef, params, state.extra, mb, chunk_size=chunk_size)
      return nll / n_tokens + aux["balance"] / grad_accum_steps, (nll, aux["load"])

    def micro_step(mb):
      (_, (nll, load)), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params, mb)
      return nll, load, None, g

    load_shape = router_load_shape(graphdef, state.params, state.extra)
    nll_sum, grads, loads, _ = accumulate_gradients(micro_step, state.params, mbs, load_shape)
    new_state, gnorm = apply_gradients(state, grads, tx)
    extra = update_router_biases(graphdef, new_state.params, state.extra, loads, router_bias_rate)
    new_state = new_state.replace(extra=extra)
    metrics = {"loss": nll_sum / n_tokens, "grad_norm": gnorm, "tokens": n_tokens}
    if load_shape[0]:  # MoE layers
      metrics["moe/load_max_over_mean"] = (loads.max(-1) / jnp.maximum(loads.mean(-1), 1e-9)).max()
    return new_state, metrics

  return step
