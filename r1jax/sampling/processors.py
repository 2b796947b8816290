"""Logit processing and token sampling: pure functions on [B, V] fp32 logits.

Order (as in HF generate): temperature, top-k, top-p, and a draw with one PRNG key per row. The
returned policy log-prob is under the *tempered, untruncated* softmax(logits / T) (greedy: T = 1),
the distribution GRPO trains (`rl.logprobs.token_logprobs(..., temperature=T)`, as verl and TRL
do), so old, reference and trained log-probs agree and the first-step ratio is exactly 1. Nothing sorts
the vocabulary and no per-entry random numbers are drawn (both are slow on CPU): top-p bisects
its cut-off, and the draw is an inverse-CDF bisection with one uniform per row. The key of a row
is folded from (seed, row id, token index), so a row's sample does not depend on which slot,
batch, padding or sharding it ran in.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from r1jax.sampling.params import StaticSampling

NEG_INF = -jnp.inf


class Draw(NamedTuple):
  tokens: jax.Array  # [B] int32
  logprobs: jax.Array  # [B] fp32, under the tempered (logits / T), untruncated softmax of the policy
  sampling_logprobs: jax.Array  # [B] fp32, under the distribution actually sampled (0 if greedy)


def row_keys(seed: jax.Array, row_ids: jax.Array, steps: jax.Array) -> jax.Array:
  """One PRNG key per row: fold_in(fold_in(key(seed), row_id), step). seed: [] uint32, ids/steps: [B]."""
  base = jax.random.key(seed)
  return jax.vmap(lambda r, s: jax.random.fold_in(jax.random.fold_in(base, r), s))(row_ids, steps)


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
  """Keeps the k largest logits of each row (ties with the k-th are kept, as in HF); rest -inf."""
  # min of the k values, not [:, -1:]: XLA:CPU turns top_k + slice into a full sort (~50x slower)
  kth = jnp.min(jax.lax.top_k(logits, k)[0], axis=-1, keepdims=True)  # [B, 1]
  return jnp.where(logits >= kth, logits, NEG_INF)


def _ordered_keys(x: jax.Array) -> jax.Array:
  """float32 -> uint32 with the same order (so a threshold can be bisected bit by bit)."""
  b = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  return jnp.where((b >> 31) == 1, ~b, b | jnp.uint32(0x80000000))


def top_p_filter(logits: jax.Array, top_p: jax.Array) -> jax.Array:
  """Nucleus: keeps the smallest top set whose probability reaches top_p (always >= 1 token).

  Token i (in descending order) is kept iff the mass of the tokens above it is < top_p, which is
  HF's rule (drop where the ascending cumsum <= 1 - top_p). No sort (XLA:CPU sorts [16, 8192] in
  ~60 ms): the cut-off logit is found by bisecting its 32 bits; each of the 32 rounds is one masked
  sum over the vocabulary. Mass above a key is monotone in the key (fp addition is monotone), so
  the bisection is exact: the result is k* = min{k : mass(logits > k) < top_p}; keep logits >= k*.
  """
  probs = jax.nn.softmax(logits, axis=-1)  # [B, V]
  keys = _ordered_keys(logits)
  B = logits.shape[0]

  def body(_, bounds):
    lo, hi = bounds  # mass above lo >= top_p > mass above hi
    mid = lo + (hi - lo) // 2
    above = jnp.sum(jnp.where(keys > mid, probs, 0.0), axis=-1, keepdims=True)
    small = above < top_p
    return jnp.where(small, lo, mid), jnp.where(small, mid, hi)

  lo = jnp.zeros((B, 1), jnp.uint32)
  hi = jnp.full((B, 1), 0xFFFFFFFF, jnp.uint32)
  _, cutoff = jax.lax.fori_loop(0, 32, body, (lo, hi))
  return jnp.where(keys >= cutoff, logits, NEG_INF)


def process_logits(logits: jax.Array, static: StaticSampling, temperature: jax.Array,
                   top_p: jax.Array) -> jax.Array:
  """The logits of the distribution that is sampled: temperature, then top-k, then top-p."""
  return truncate(logits / temperature, static, top_p)


def truncate(tempered: jax.Array, static: StaticSampling, top_p: jax.Array) -> jax.Array:
  """Top-k, then top-p, of already tempered logits."""
  z = tempered
  if static.top_k:
    z = top_k_filter(z, static.top_k)
  if static.use_top_p:
    z = top_p_filter(z, top_p)
  return z


def inverse_cdf_draw(logits: jax.Array, uniforms: jax.Array) -> jax.Array:
  """One token per row from softmax(logits) by inverse CDF: the smallest i with cdf(i) > u * total.

  uniforms: [B] in [0, 1). One uniform per row instead of a Gumbel per vocabulary entry (drawing
  B x V Gumbels costs ~7 ms per step on CPU for V = 8192); the cdf is bisected over the index
  (ceil(log2(V + 1)) masked sums), with no cumsum. Masked prefix sums are monotone in i, so the
  token found always has nonzero probability.
  """
  B, V = logits.shape
  probs = jax.nn.softmax(logits, axis=-1)
  target = uniforms[:, None] * jnp.sum(probs, axis=-1, keepdims=True)  # [B, 1]
  idx = jnp.arange(V, dtype=jnp.int32)[None, :]

  def body(_, bounds):
    lo, hi = bounds  # cdf(lo) <= target < cdf(hi); cdf(-1) = 0
    mid = (lo + hi) // 2
    below = jnp.sum(jnp.where(idx <= mid, probs, 0.0), axis=-1, keepdims=True)
    past = below > target
    return jnp.where(past, lo, mid), jnp.where(past, mid, hi)

  lo = jnp.full((B, 1), -1, jnp.int32)
  hi = jnp.full((B, 1), V - 1, jnp.int32)
  _, tokens = jax.lax.fori_loop(0, max(1, (V).bit_length()), body, (lo, hi))
  tokens = tokens[:, 0]
  # fp guard: if u * total rounded up to total, fall back to the most likely token
  zero = jnp.take_along_axis(probs, tokens[:, None], axis=-1)[:, 0] <= 0
  return jnp.where(zero, jnp.argmax(logits, axis=-1), tokens).astype(jnp.int32)


def _pick(values: jax.Array, tokens: jax.Array) -> jax.Array:
  return jnp.take_along_axis(values, tokens[:, None], axis=-1)[:, 0]


def sample(logits: jax.Array, keys: jax.Array, static: StaticSampling, temperature: jax.Array,
           top_p: jax.Array) -> Draw:
  """logits: [B, V] fp32; keys: [B] PRNG keys. temperature/top_p: [] fp32 (traced, no recompiles)."""
  logits = logits.astype(jnp.float32)
  if static.greedy:
    tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    sampling_lp = jnp.zeros(tokens.shape, jnp.float32)
    return Draw(tokens, _pick(logits, tokens) - jax.nn.logsumexp(logits, axis=-1), sampling_lp)
  tempered = logits / temperature  # [B, V]: the policy log-probs and the sampled distribution
  z = truncate(tempered, static, top_p)
  tokens = inverse_cdf_draw(z, jax.vmap(jax.random.uniform)(keys))
  if static.sampling_logprobs:
    sampling_lp = _pick(z, tokens) - jax.nn.logsumexp(z, axis=-1)
  else:
    sampling_lp = jnp.zeros(tokens.shape, jnp.float32)
  return Draw(tokens, _pick(tempered, tokens) - jax.nn.logsumexp(tempered, axis=-1), sampling_lp)
