"""Attention: GQA (Qwen2/Llama/Qwen3) and MLA (DeepSeek-V2/V3), with an optional KV cache.

Masking is by (segment, index) when there is no cache — causal within a packed document, and a
segment id of 0 marks padding — and by stored positions when there is one: a cache slot is
visible to a query iff it holds a token (`pos >= 0`) at a position <= the query's position.
Each cache row holds one sequence, so this is exactly causal attention.

The cache is a plain pytree passed in and returned (never module state), so the sampler can
donate it and the parameters stay arguments.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.models.layers import Dense, RMSNorm, apply_rope, attention_scale, dtype_of, rope_frequencies

NEG_INF = -1e30  # finite, so a fully masked (padding) row gives uniform weights, never NaN


def write_rows(buf, new, index):
  """buf: [B, S, ...], new: [B, T, ...], index: [B] -> buf with new written at [index, index+T)."""
  def one(b, n, i):
    return jax.lax.dynamic_update_slice(b, n.astype(b.dtype), (i,) + (0,) * (b.ndim - 1))
  return jax.vmap(one)(buf, new, index)


def make_mask(q_pos, q_seg, k_pos, k_seg, cached: bool):
  """[B, T, S] boolean attention mask."""
  if cached:
    # k_pos is the cache's stored positions (-1 = empty slot).
    return (k_pos[:, None, :] >= 0) & (k_pos[:, None, :] <= q_pos[:, :, None]) & (q_seg[:, :, None] > 0)
  T = q_pos.shape[1]
  causal = jnp.tril(jnp.ones((T, T), bool))[None]
  same = (q_seg[:, :, None] == k_seg[:, None, :]) & (k_seg[:, None, :] > 0)
  return causal & same


def attend(q, k, v, mask, scale):
  """q: [B, T, K, G, Dq], k: [B, S, K, Dq], v: [B, S, K, Dv], mask [B, T, S] -> [B, T, K, G, Dv]."""
  s = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32) * scale
  s = jnp.where(mask[:, None, None], s, NEG_INF)
  p = jax.nn.softmax(s, axis=-1)
  return jnp.einsum("bkgts,bskd->btkgd", p.astype(v.dtype), v, preferred_element_type=jnp.float32).astype(v.dtype)


def attend_cudnn(q, k, v, mask, scale):
  """The fused cuDNN kernel: q [B, T, H, D], k/v [B, S, K, D] (K divides H), mask [B, T, S] (causal and
  same-segment; it becomes an additive bias inside the kernel) -> [B, T, H, D]."""
  return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=scale, is_causal=True,
                                      implementation="cudnn")


class GQAAttention(nnx.Module):
  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    H, K, D, d = cfg.n_heads, cfg.kv_heads, cfg.hd, cfg.d_model
    b = cfg.qkv_bias
    self.q_proj = Dense(d, (H, D), ("embed",), ("heads", "head_dim"), cfg, rngs=rngs, bias=b)
    self.k_proj = Dense(d, (K, D), ("embed",), ("kv_heads", "head_dim"), cfg, rngs=rngs, bias=b)
    self.v_proj = Dense(d, (K, D), ("embed",), ("kv_heads", "head_dim"), cfg, rngs=rngs, bias=b)
    self.o_proj = Dense((H, D), d, ("heads", "head_dim"), ("embed",), cfg, rngs=rngs)
    if cfg.qk_norm:
      self.q_norm = RMSNorm(D, cfg, rngs=rngs, axis_name="head_dim")
      self.k_norm = RMSNorm(D, cfg, rngs=rngs, axis_name="head_dim")
    else:
      self.q_norm = self.k_norm = None
    self.scale = attention_scale(D, cfg.rope_scaling)

  @staticmethod
  def cache_shapes(cfg: ModelConfig, batch: int, length: int):
    return {"k": (batch, length, cfg.kv_heads, cfg.hd), "v": (batch, length, cfg.kv_heads, cfg.hd)}

  def __call__(self, x, positions, segment_ids, cache=None, cache_pos=None, write_index=None):
    cfg = self.cfg
    q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # [B, T, H|K, D]
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    inv, fac = rope_frequencies(cfg.rope_dim, cfg.rope_theta, cfg.rope_scaling)  # numpy: a trace-time constant
    q = apply_rope(q, positions, inv, fac, cfg.rope_interleave)
    k = apply_rope(k, positions, inv, fac, cfg.rope_interleave)
    if cache is not None:
      cache = {"k": write_rows(cache["k"], k, write_index), "v": write_rows(cache["v"], v, write_index)}
      k, v = cache["k"], cache["v"]
      mask = make_mask(positions, segment_ids, cache_pos, None, cached=True)
    else:
      mask = make_mask(positions, segment_ids, positions, segment_ids, cached=False)
    B, T, H, D = q.shape
    Kh = cfg.kv_heads
    if cache is None and cfg.attention_impl == "cudnn":
      return self.o_proj(attend_cudnn(q, k.astype(q.dtype), v.astype(q.dtype), mask, self.scale)), cache
    q = q.reshape(B, T, Kh, H // Kh, D)
    o = attend(q, k.astype(q.dtype), v.astype(q.dtype), mask, self.scale).reshape(B, T, H, D)
    return self.o_proj(o), cache


class MLAttention(nnx.Module):
  """Multi-head latent attention. Without a cache: expand K/V from the latent (training).

  With a cache holding the compressed latent (c_kv after its norm, and the roped k_rope), the
  absorbed form folds W_UK into the query and W_UV into the output, so attention runs as
  multi-query attention over [c_kv | k_rope] and K/V are never re-expanded.
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    H, d, r = cfg.n_heads, cfg.d_model, cfg.kv_lora_rank
    if cfg.q_lora_rank:
      self.q_a_proj = Dense(d, cfg.q_lora_rank, ("embed",), ("q_lora",), cfg, rngs=rngs)
      self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, cfg, rngs=rngs, axis_name="q_lora")
      self.q_b_proj = Dense(cfg.q_lora_rank, (H, cfg.qk_head_dim), ("q_lora",), ("heads", "head_dim"), cfg,
                            rngs=rngs)
      self.q_proj = None
    else:
      self.q_proj = Dense(d, (H, cfg.qk_head_dim), ("embed",), ("heads", "head_dim"), cfg, rngs=rngs)
      self.q_a_proj = self.q_a_layernorm = self.q_b_proj = None
    self.kv_a_proj_with_mqa = Dense(d, r + cfg.qk_rope_head_dim, ("embed",), ("kv_lora",), cfg, rngs=rngs)
    self.kv_a_layernorm = RMSNorm(r, cfg, rngs=rngs, axis_name="kv_lora")
    self.kv_b_proj = Dense(r, (H, cfg.qk_nope_head_dim + cfg.v_head_dim), ("kv_lora",), ("heads", "head_dim"),
                           cfg, rngs=rngs)
    self.o_proj = Dense((H, cfg.v_head_dim), d, ("heads", "head_dim"), ("embed",), cfg, rngs=rngs)
    self.scale = attention_scale(cfg.qk_head_dim, cfg.rope_scaling)

  @staticmethod
  def cache_shapes(cfg: ModelConfig, batch: int, length: int):
    return {"c_kv": (batch, length, cfg.kv_lora_rank), "k_rope": (batch, length, cfg.qk_rope_head_dim)}

  def _query(self, x):
    if self.q_proj is not None:
      return self.q_proj(x)
    return self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))

  def __call__(self, x, positions, segment_ids, cache=None, cache_pos=None, write_index=None):
    cfg = self.cfg
    nope, rope_d, r = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.kv_lora_rank
    q = self._query(x)  # [B, T, H, nope + rope]
    q_nope, q_rope = q[..., :nope], q[..., nope:]
    ckv = self.kv_a_proj_with_mqa(x)  # [B, T, r + rope]
    c_kv, k_rope = self.kv_a_layernorm(ckv[..., :r]), ckv[..., r:]
    inv, fac = rope_frequencies(rope_d, cfg.rope_theta, cfg.rope_scaling)
    q_rope = apply_rope(q_rope, positions, inv, fac, cfg.rope_interleave)
    k_rope = apply_rope(k_rope[:, :, None, :], positions, inv, fac, cfg.rope_interleave)[:, :, 0]
    if cache is not None:
      cache = {"c_kv": write_rows(cache["c_kv"], c_kv, write_index),
               "k_rope": write_rows(cache["k_rope"], k_rope, write_index)}
      c_kv, k_rope = cache["c_kv"].astype(q.dtype), cache["k_rope"].astype(q.dtype)
      mask = make_mask(positions, segment_ids, cache_pos, None, cached=True)
    else:
      mask = make_mask(positions, segment_ids, positions, segment_ids, cached=False)
    w_kv = self.kv_b_proj.kernel[...].astype(q.dtype)  # [r, H, nope + v]
    w_uk, w_uv = w_kv[..., :nope], w_kv[..., nope:]
    if cache is not None and cfg.mla_absorb:
      q_lat = jnp.einsum("bthn,rhn->bthr", q_nope, w_uk)
      qc = jnp.concatenate([q_lat, q_rope], -1)[:, :, None]  # [B, T, 1, H, r + rope]
      kc = jnp.concatenate([c_kv, k_rope], -1)[:, :, None]  # [B, S, 1, r + rope]
      o_lat = attend(qc, kc, c_kv[:, :, None], mask, self.scale)[:, :, 0]  # [B, T, H, r]
      o = jnp.einsum("bthr,rhv->bthv", o_lat, w_uv)
    else:
      k_nope = jnp.einsum("bsr,rhn->bshn", c_kv, w_uk)
      v = jnp.einsum("bsr,rhv->bshv", c_kv, w_uv)
      k = jnp.concatenate([k_nope, jnp.broadcast_to(k_rope[:, :, None], k_nope.shape[:3] + (rope_d,))], -1)
      qf = jnp.concatenate([q_nope, q_rope], -1)[:, :, :, None]  # [B, T, H, 1, Dq]
      o = attend(qf, k, v, mask, self.scale)[:, :, :, 0]  # [B, T, H, v]
    return self.o_proj(o), cache
