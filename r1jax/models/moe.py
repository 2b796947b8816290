"""Mixture-of-experts FFN: fp32 router (softmax or DeepSeek-V3 sigmoid + correction bias + group
limit), shared experts, and five dispatch backends behind `dispatch` (`ModelConfig.moe_backend`):

- "sort":   argsort tokens by expert, scatter into per-expert buffers [E, C, D], batched einsum,
            gather back. Dropless when capacity_factor is None (C = number of tokens, since a token
            picks an expert at most once); otherwise C = ceil(cf * N * K / E) and overflow is dropped
            and counted. Fast on CPU.
- "blocks": argsort, pad each expert's rows to a multiple of a block (`moe_block_size`), and run
            one batched einsum over blocks with each block's expert weights gathered: dropless,
            and only the routed tokens (plus < one block per expert of padding) are computed.
            The CPU default; weight gathering makes it a poor fit for very large experts.
- "ragged": argsort + `jax.lax.ragged_dot` grouped matmuls; dropless, for TPU/GPU.
- "dense":  every expert on every token, masked combine; the numerical oracle for tests.
- "alltoall": expert parallelism over the mesh's "expert" axis with explicit all-to-all in a
            shard_map (moe_alltoall.py); "blocks" on each shard's experts.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.models.layers import RouterBias, SwiGLU, dtype_of, param
from r1jax.models.moe_alltoall import alltoall_dispatch, token_shard_map


class Routing(NamedTuple):
  weights: jax.Array  # [N, K] fp32 combine weights
  experts: jax.Array  # [N, K] int32 chosen experts
  scores: jax.Array  # [N, E] fp32 unbiased scores (softmax probs or sigmoid)


def route(logits, cfg: ModelConfig, bias=None) -> Routing:
  """logits: [N, E] fp32. The correction bias only chooses experts; weights use unbiased scores."""
  E, K = cfg.n_routed_experts, cfg.n_experts_per_tok
  logits = logits.astype(jnp.float32)
  scores = jax.nn.sigmoid(logits) if cfg.router_score == "sigmoid" else jax.nn.softmax(logits, axis=-1)
  choice = scores + bias.astype(jnp.float32) if bias is not None else scores
  if cfg.n_group > 1:
    g = choice.reshape(choice.shape[0], cfg.n_group, E // cfg.n_group)
    # DeepSeek-V3 ranks groups by the sum of their top-2 scores; V2 (softmax) by the group max.
    group_score = jax.lax.top_k(g, 2)[0].sum(-1) if cfg.router_score == "sigmoid" else g.max(-1)
    _, keep = jax.lax.top_k(group_score, cfg.topk_group)  # [N, topk_group]
    gmask = jnp.zeros_like(group_score, bool).at[jnp.arange(g.shape[0])[:, None], keep].set(True)
    choice = jnp.where(jnp.repeat(gmask, E // cfg.n_group, axis=-1), choice, -jnp.inf)
  _, experts = jax.lax.top_k(choice, K)
  weights = jnp.take_along_axis(scores, experts, axis=-1)
  if cfg.norm_topk_prob:
    weights = weights / (weights.sum(-1, keepdims=True) + 1e-20)
  return Routing(weights * cfg.routed_scaling_factor, experts.astype(jnp.int32), scores)


def _swiglu(x, wg, wu, wd):
  """Batched over a leading expert dim: x [E, C, D] -> [E, C, D]."""
  h = jax.nn.silu(jnp.einsum("ecd,edf->ecf", x, wg)) * jnp.einsum("ecd,edf->ecf", x, wu)
  return jnp.einsum("ecf,efd->ecd", h, wd)


def _blocks(xs, s_e, counts, wg, wu, wd, block: int):
  """Dropless grouped SwiGLU on expert-sorted rows xs [R0, D] (sentinel expert E sorted last)."""
  R0, D = xs.shape
  E = wg.shape[0]
  sizes = counts[:E]
  padded = (sizes + block - 1) // block * block
  pstart = jnp.cumsum(padded) - padded
  start = jnp.cumsum(sizes) - sizes
  R = -(-(R0 + E * (block - 1)) // block) * block  # static bound on the padded row count
  e_clip = jnp.minimum(s_e, E - 1)
  dest = jnp.where(s_e < E, pstart[e_clip] + jnp.arange(R0, dtype=jnp.int32) - start[e_clip], R)
  xp = jnp.zeros((R, D), xs.dtype).at[dest].set(xs, mode="drop").reshape(R // block, block, D)
  e_blk = jnp.minimum(jnp.searchsorted(jnp.cumsum(padded), jnp.arange(R // block) * block, side="right"), E - 1)
  h = jax.nn.silu(jnp.einsum("bnd,bdf->bnf", xp, wg[e_blk])) * jnp.einsum("bnd,bdf->bnf", xp, wu[e_blk])
  yp = jnp.einsum("bnf,bfd->bnd", h, wd[e_blk]).reshape(R, D)
  return jnp.where((s_e < E)[:, None], yp[jnp.minimum(dest, R - 1)], 0)


def dispatch(x, routing: Routing, wg, wu, wd, token_mask, *, backend: str, capacity_factor=None, block: int = 64):
  """x: [N, D]; expert weights wg/wu: [E, D, F], wd: [E, F, D]; token_mask: [N] bool.

  Returns (y [N, D], dropped assignments count). Masked (padding) tokens are sent to a sentinel
  expert E, so they take no capacity and produce zeros.
  """
  if backend == "alltoall":  # expert parallelism in a shard_map (moe_alltoall.py)
    return alltoall_dispatch(x, routing, wg, wu, wd, token_mask, capacity_factor=capacity_factor, block=block,
                             local_dispatch=dispatch)
  N, D = x.shape
  E = wg.shape[0]
  K = routing.experts.shape[1]
  w = jnp.where(token_mask[:, None], routing.weights, 0.0)  # [N, K]
  if backend == "dense":
    gate = jnp.zeros((N, E), jnp.float32).at[jnp.arange(N)[:, None], routing.experts].add(w)
    ys = _swiglu(jnp.broadcast_to(x, (E, N, D)), wg, wu, wd)  # [E, N, D]
    return jnp.einsum("ne,end->nd", gate.astype(x.dtype), ys), jnp.int32(0)

  flat_e = jnp.where(token_mask[:, None], routing.experts, E).reshape(-1)  # [N*K]
  flat_tok = jnp.repeat(jnp.arange(N, dtype=jnp.int32), K)
  order = jnp.argsort(flat_e, stable=True)
  s_e, s_tok, s_w = flat_e[order], flat_tok[order], w.reshape(-1)[order]
  counts = jnp.zeros((E + 1,), jnp.int32).at[flat_e].add(1)
  xs = x[s_tok]  # [N*K, D]
  if backend == "ragged":
    gs = counts[:E]
    h = jax.nn.silu(jax.lax.ragged_dot(xs, wg, gs)) * jax.lax.ragged_dot(xs, wu, gs)
    out = jax.lax.ragged_dot(h, wd, gs)  # rows past sum(gs) (sentinel) come back as zeros
    out = jnp.where((s_e < E)[:, None], out, 0)
    dropped = jnp.int32(0)
  elif backend == "blocks":
    # Blocks no larger than an expert's fair share of rows: small batches (decode) pad little.
    fair = -(-N * K // E)
    out = _blocks(xs, s_e, counts, wg, wu, wd, max(1, min(block, 1 << (fair - 1).bit_length())))
    dropped = jnp.int32(0)
  else:
    C = N if capacity_factor is None else max(1, min(N, math.ceil(capacity_factor * N * K / E)))
    starts = jnp.cumsum(counts) - counts
    rank = jnp.arange(N * K, dtype=jnp.int32) - starts[s_e]
    keep = (s_e < E) & (rank < C)
    e_idx = jnp.where(keep, s_e, E)  # out of range -> dropped by the scatter
    buf = jnp.zeros((E, C, D), x.dtype).at[e_idx, rank].set(xs, mode="drop")
    yb = _swiglu(buf, wg, wu, wd)
    out = jnp.where(keep[:, None], yb[jnp.minimum(s_e, E - 1), jnp.minimum(rank, C - 1)], 0)
    dropped = jnp.sum((s_e < E) & ~keep).astype(jnp.int32)
  y = jnp.zeros((N, D), jnp.float32).at[s_tok].add(out.astype(jnp.float32) * s_w[:, None])
  return y.astype(x.dtype), dropped


def sequence_balance_loss(scores, experts, seg_mask, n_experts, k):
  """DeepSeek-V3 sequence-wise balance loss sum_i f_i P_i, averaged over sequences.

  scores: [B, T, E] unbiased router scores, experts: [B, T, K], seg_mask: [B, T] (valid tokens).
  f_i = E / (K T) * #tokens of the sequence routed to i;  P_i = mean_t s_i,t / sum_j s_j,t.
  """
  m = seg_mask.astype(jnp.float32)
  T = jnp.maximum(m.sum(-1), 1.0)  # [B]
  hits = jax.nn.one_hot(experts, n_experts, dtype=jnp.float32).sum(-2) * m[..., None]  # [B, T, E]
  f = hits.sum(1) * n_experts / (k * T[:, None])
  p = ((scores / (scores.sum(-1, keepdims=True) + 1e-20)) * m[..., None]).sum(1) / T[:, None]
  return jnp.mean(jnp.sum(f * p, -1))


class MoE(nnx.Module):
  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    E, D, F = cfg.n_routed_experts, cfg.d_model, cfg.moe_ffn_dim
    pd = dtype_of(cfg.param_dtype)
    # Router kernel in fp32 whatever the param dtype: routing must agree between sampler and trainer.
    self.gate = param(rngs, (D, E), ("embed", "router"), jnp.float32, cfg.init_std)
    self.e_score_correction_bias = (RouterBias(jnp.zeros((E,), jnp.float32), axes=("router",))
                                    if cfg.router_bias else None)
    self.w_gate = param(rngs, (E, D, F), ("experts", "embed", "moe_mlp"), pd, cfg.init_std)
    self.w_up = param(rngs, (E, D, F), ("experts", "embed", "moe_mlp"), pd, cfg.init_std)
    self.w_down = param(rngs, (E, F, D), ("experts", "moe_mlp", "embed"), pd, cfg.init_std)
    self.shared_experts = (SwiGLU(cfg, F * cfg.n_shared_experts, rngs=rngs, mlp_axis="mlp")
                           if cfg.n_shared_experts else None)

  def __call__(self, x, token_mask):
    """x: [B, T, D]; token_mask: [B, T]. Returns (y, aux) with aux = {load [E], balance, dropped}."""
    cfg = self.cfg
    B, T, D = x.shape
    dt = dtype_of(cfg.dtype)
    xf = x.reshape(B * T, D)
    logits = jnp.dot(xf.astype(jnp.float32), self.gate[...].astype(jnp.float32))
    bias = self.e_score_correction_bias[...] if self.e_score_correction_bias is not None else None
    # Routing is per token: each device routes its own rows (no gather of the [N, E] scores).
    r = Routing(*token_shard_map(lambda l, b: tuple(route(l, cfg, b)), B * T, token_args=1, replicated_args=1,
                                 outputs=3)(logits, bias))  # bias None: an empty replicated argument
    mask = token_mask.reshape(-1)
    y, dropped = dispatch(xf.astype(dt), r, self.w_gate[...].astype(dt), self.w_up[...].astype(dt),
                          self.w_down[...].astype(dt), mask, backend=cfg.moe_backend,
                          capacity_factor=cfg.capacity_factor, block=cfg.moe_block_size)
    y = y.reshape(B, T, D)
    if self.shared_experts is not None:
      y = y + self.shared_experts(x)
    load = jnp.zeros((cfg.n_routed_experts,), jnp.float32).at[r.experts.reshape(-1)].add(
        jnp.repeat(mask, cfg.n_experts_per_tok).astype(jnp.float32))
    balance = jnp.float32(0)
    if cfg.seq_aux_loss_coef > 0:
      balance = cfg.seq_aux_loss_coef * sequence_balance_loss(
          r.scores.reshape(B, T, -1), r.experts.reshape(B, T, -1), token_mask, cfg.n_routed_experts,
          cfg.n_experts_per_tok)
    return y, {"load": load, "balance": balance, "dropped": dropped}


def update_router_bias(bias, load, rate: float):
  """Aux-loss-free balancing (DeepSeek-V3): bias += rate * sign(mean_load - load).

  `load` must be summed over the whole global batch (inside jit on global arrays it is), so every
  replica applies the same update.
  """
  return bias + rate * jnp.sign(load.mean(-1, keepdims=True) - load)
