"""Building blocks: parameters with logical axes, RMSNorm, SwiGLU, RoPE (default / YaRN / llama3)."""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r1jax.models.config import ModelConfig, RopeScaling


class RouterBias(nnx.Variable):
  """DeepSeek-V3's e_score_correction_bias: model state, never an optimizer parameter."""


def dtype_of(name: str):
  return jnp.dtype(name)


class KeySeq:
  """Parameter keys folded from one base key by a Python counter.

  Stands in for nnx.Rngs inside the model's constructors: each nnx.Rngs draw updates a Variable,
  which under tracing (eval_shape of a 671B model, the sharded init) costs far more than the draw.
  """

  def __init__(self, key):
    # XLA's RngBitGenerator: initialisers compile ~3x faster than with threefry on CPU, which
    # dominates building small models; init quality is all that matters here.
    data = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    data = jnp.concatenate([data, data ^ jnp.uint32(0x9E3779B9)])[:4]
    self.key, self.count = jax.random.wrap_key_data(data, impl="unsafe_rbg"), 0

  def params(self):
    self.count += 1
    return jax.random.fold_in(self.key, self.count)


def param(rngs, shape: Sequence[int], axes: Sequence[str | None], dtype, std: float | None):
  """An nnx.Param carrying its logical axis names (`axes`); std=None means ones, 0 zeros."""
  assert len(shape) == len(axes), (shape, axes)
  if std is None:
    value = jnp.ones(shape, dtype)
  elif std == 0:
    value = jnp.zeros(shape, dtype)
  else:
    value = (std * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)  # HF: normal_(0, std)
  return nnx.Param(value, axes=tuple(axes))


class Dense(nnx.Module):
  """y = x @ W (+ b) where W is [*in_shape, *out_shape]; contracts the trailing len(in_shape) dims."""

  def __init__(self, in_shape, out_shape, in_axes, out_axes, cfg: ModelConfig, *, rngs, bias=False):
    in_shape, out_shape = tuple(np.atleast_1d(in_shape)), tuple(np.atleast_1d(out_shape))
    pd = dtype_of(cfg.param_dtype)
    self.n_in = len(in_shape)
    self.dtype = dtype_of(cfg.dtype)
    self.kernel = param(rngs, in_shape + out_shape, tuple(in_axes) + tuple(out_axes), pd, cfg.init_std)
    self.bias = param(rngs, out_shape, out_axes, pd, 0) if bias else None

  def __call__(self, x):
    k = self.kernel[...].astype(self.dtype)
    n = self.n_in
    y = jax.lax.dot_general(x.astype(self.dtype), k, (((tuple(range(x.ndim - n, x.ndim))), tuple(range(n))), ((), ())))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class RMSNorm(nnx.Module):
  """HF-compatible RMSNorm: statistics in fp32, weight applied after casting back."""

  def __init__(self, dim: int, cfg: ModelConfig, *, rngs, axis_name="norm"):
    self.eps = cfg.norm_eps
    self.weight = param(rngs, (dim,), (axis_name,), dtype_of(cfg.param_dtype), None)

  def __call__(self, x):
    dt = x.dtype
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return self.weight[...].astype(dt) * xf.astype(dt)


class SwiGLU(nnx.Module):
  def __init__(self, cfg: ModelConfig, hidden: int, *, rngs, mlp_axis="mlp"):
    d = cfg.d_model
    self.gate_proj = Dense(d, hidden, ("embed",), (mlp_axis,), cfg, rngs=rngs)
    self.up_proj = Dense(d, hidden, ("embed",), (mlp_axis,), cfg, rngs=rngs)
    self.down_proj = Dense(hidden, d, (mlp_axis,), ("embed",), cfg, rngs=rngs)

  def __call__(self, x):
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


# ---------------------------------------------------------------- RoPE


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
  return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_frequencies(dim: int, theta: float, scaling: RopeScaling | None) -> tuple[np.ndarray, float]:
  """Inverse frequencies [dim/2] and the cos/sin multiplier ("attention_factor"), as HF computes them."""
  inv = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
  if scaling is None:
    return inv.astype(np.float32), 1.0
  s = scaling
  if s.kind == "linear":
    return (inv / s.factor).astype(np.float32), 1.0
  if s.kind == "llama3":
    lo_wl = s.original_max_position_embeddings / s.low_freq_factor
    hi_wl = s.original_max_position_embeddings / s.high_freq_factor
    wl = 2 * math.pi / inv
    out = np.where(wl > lo_wl, inv / s.factor, inv)
    smooth = (s.original_max_position_embeddings / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * out / s.factor + smooth * out
    medium = ~(wl < hi_wl) & ~(wl > lo_wl)
    return np.where(medium, smoothed, out).astype(np.float32), 1.0
  # YaRN
  if s.attention_factor is not None:
    att = s.attention_factor
  elif s.mscale and s.mscale_all_dim:
    att = _yarn_mscale(s.factor, s.mscale) / _yarn_mscale(s.factor, s.mscale_all_dim)
  else:
    att = _yarn_mscale(s.factor)

  def corr_dim(rot):
    return dim * math.log(s.original_max_position_embeddings / (rot * 2 * math.pi)) / (2 * math.log(theta))

  lo, hi = corr_dim(s.beta_fast), corr_dim(s.beta_slow)
  if s.truncate:
    lo, hi = math.floor(lo), math.ceil(hi)
  lo, hi = max(lo, 0), min(hi, dim - 1)
  if lo == hi:
    hi += 0.001
  ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - lo) / (hi - lo), 0, 1)
  extrap = 1 - ramp
  pos = theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim)
  inv = (1.0 / (s.factor * pos)) * (1 - extrap) + (1.0 / pos) * extrap
  return inv.astype(np.float32), float(att)


def attention_scale(head_dim: int, scaling: RopeScaling | None) -> float:
  """Softmax scale; YaRN with mscale_all_dim multiplies it by mscale^2 (DeepSeek-V2/V3)."""
  scale = head_dim ** -0.5
  if scaling is not None and scaling.kind == "yarn" and scaling.mscale_all_dim:
    m = _yarn_mscale(scaling.factor, scaling.mscale_all_dim)
    scale *= m * m
  return scale


def apply_rope(x, positions, inv_freq, attention_factor: float = 1.0, interleave: bool = False):
  """x: [B, T, H, D]; positions: [B, T]. Rotate-half (NeoX) layout.

  With `interleave` the pairs are (x0, x1), (x2, x3), ... (DeepSeek-V3): the dims are first
  de-interleaved into [even | odd] and then rotated; q and k get the same permutation, so
  attention scores are unchanged by the reordering.
  """
  if interleave:
    x = jnp.concatenate([x[..., 0::2], x[..., 1::2]], axis=-1)
  ang = positions[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)  # [B, T, D/2]
  cos = (jnp.cos(ang) * attention_factor)[:, :, None, :]
  sin = (jnp.sin(ang) * attention_factor)[:, :, None, :]
  cos = jnp.concatenate([cos, cos], -1)
  sin = jnp.concatenate([sin, sin], -1)
  xf = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  rot = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
  return (xf * cos + rot * sin).astype(x.dtype)
