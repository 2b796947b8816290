"""Logit processors and the sampler's draw, against NumPy transcriptions of the HF rules."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.sampling.params import SamplingParams
from r1jax.sampling.processors import (inverse_cdf_draw, process_logits, row_keys, sample, top_k_filter,
                                      top_p_filter)


def ref_truncated_probs(logits, temperature, top_k=0, top_p=1.0):
  """NumPy transcription of HF's TemperatureLogitsWarper -> TopKLogitsWarper -> TopPLogitsWarper."""
  z = np.asarray(logits, np.float64) / temperature
  if top_k:
    kth = np.sort(z)[::-1][top_k - 1]
    z = np.where(z < kth, -np.inf, z)
  if top_p < 1.0:
    asc = np.argsort(z, kind="stable")  # HF sorts ascending and drops cumsum <= 1 - top_p
    p = np.exp(z[asc] - z.max())
    p /= p.sum()
    drop = np.cumsum(p) <= 1 - top_p
    drop[-1] = False  # min_tokens_to_keep = 1
    z = z.copy()
    z[asc[drop]] = -np.inf
  e = np.exp(z - z.max())
  return e / e.sum()


def chi2_critical(dof: int, z: float = 3.09) -> float:
  """Wilson-Hilferty approximation of the chi-square quantile (z = 3.09: the 0.999 quantile)."""
  a = 2.0 / (9.0 * dof)
  return dof * (1 - a + z * math.sqrt(a)) ** 3


def test_top_k_filter_keeps_k_largest():
  logits = jax.random.normal(jax.random.key(0), (3, 50))
  out = np.asarray(jax.jit(top_k_filter, static_argnums=1)(logits, 7))
  for row, o in zip(np.asarray(logits), out):
    kept = np.flatnonzero(np.isfinite(o))
    np.testing.assert_array_equal(np.sort(kept), np.sort(np.argsort(-row)[:7]))
    np.testing.assert_array_equal(o[kept], row[kept])


def test_top_p_filter_matches_hf_rule():
  logits = 2.0 * jax.random.normal(jax.random.key(1), (4, 40))
  filt = jax.jit(top_p_filter)
  for top_p in (0.05, 0.5, 0.9, 0.999):
    out = np.asarray(filt(logits, jnp.float32(top_p)))
    for row, o in zip(np.asarray(logits), out):
      ref = ref_truncated_probs(row, 1.0, 0, top_p)
      np.testing.assert_array_equal(np.isfinite(o), ref > 0)
      assert np.isfinite(o).sum() >= 1


def test_process_logits_matches_reference_support_and_probs():
  logits = 3.0 * jax.random.normal(jax.random.key(2), (2, 64))
  sp = SamplingParams(temperature=0.7, top_k=10, top_p=0.8)
  z = jax.jit(lambda l: jax.nn.softmax(process_logits(l, sp.static_key(64), 0.7, 0.8), axis=-1))(logits)
  got = np.asarray(z)
  for row, g in zip(np.asarray(logits), got):
    np.testing.assert_allclose(g, ref_truncated_probs(row, 0.7, 10, 0.8), atol=1e-6)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.5, 4, 1.0), (1.5, 0, 0.7), (0.8, 6, 0.75)])
def test_empirical_frequencies_match_truncated_distribution(temperature, top_k, top_p):
  V, N = 16, 20000  # (tiny odd vocabularies like 10 make threefry compile for seconds)
  logits = np.linspace(-1.5, 1.5, V).astype(np.float32)[np.random.default_rng(0).permutation(V)]
  sp = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, return_sampling_logprobs=True)

  @jax.jit
  def draw_all(l):
    keys = row_keys(jnp.uint32(123), jnp.arange(N, dtype=jnp.int32), jnp.zeros((N,), jnp.int32))
    return sample(jnp.broadcast_to(l, (N, V)), keys, sp.static_key(V), jnp.float32(temperature), jnp.float32(top_p))

  draw = draw_all(jnp.asarray(logits))
  tokens = np.asarray(draw.tokens)
  probs = ref_truncated_probs(logits, temperature, top_k, top_p)
  counts = np.bincount(tokens, minlength=V)
  assert counts[probs == 0].sum() == 0, "sampled a token outside the truncated support"
  support = probs > 0
  expected = N * probs[support]
  stat = float(np.sum((counts[support] - expected) ** 2 / expected))
  assert stat < chi2_critical(int(support.sum()) - 1), (stat, counts, expected)
  # log-probs: policy = tempered full softmax (logits / T); sampling = the truncated distribution
  z = logits.astype(np.float64) / temperature
  policy = z - np.log(np.exp(z).sum())
  np.testing.assert_allclose(np.asarray(draw.logprobs), policy[tokens], atol=1e-5)
  np.testing.assert_allclose(np.asarray(draw.sampling_logprobs), np.log(probs[tokens]), atol=1e-5)


def test_greedy_is_argmax_and_ignores_keys():
  logits = jax.random.normal(jax.random.key(3), (5, 30))
  st = SamplingParams(temperature=0.0, top_k=3).static_key(30)
  run = jax.jit(lambda seed, step: sample(logits, row_keys(seed, jnp.arange(5), step), st, 1.0, 1.0))
  a = run(jnp.uint32(0), jnp.zeros(5, jnp.int32))
  b = run(jnp.uint32(9), jnp.ones(5, jnp.int32))
  np.testing.assert_array_equal(a.tokens, np.argmax(np.asarray(logits), -1))
  np.testing.assert_array_equal(a.tokens, b.tokens)
  l = np.asarray(logits, np.float64)
  ref_lp = l - np.log(np.exp(l).sum(-1, keepdims=True))
  np.testing.assert_allclose(a.logprobs, ref_lp[np.arange(5), a.tokens], atol=1e-6)
  np.testing.assert_array_equal(a.sampling_logprobs, 0.0)


def test_row_keys_depend_on_seed_row_and_step_only():
  data = lambda k: np.asarray(jax.random.key_data(k))  # noqa: E731
  keys = jax.jit(row_keys)
  k1 = keys(jnp.uint32(5), jnp.array([0, 1, 2]), jnp.array([0, 0, 3]))
  k2 = keys(jnp.uint32(5), jnp.array([2, 0]), jnp.array([3, 0]))  # other batch composition
  np.testing.assert_array_equal(data(k1)[[2, 0]], data(k2))
  k3 = keys(jnp.uint32(6), jnp.array([0, 1, 2]), jnp.array([0, 0, 3]))
  assert not np.any(np.all(data(k1) == data(k3), axis=-1))
  assert len({tuple(r) for r in data(k1)}) == 3


def test_inverse_cdf_draw_matches_numpy_and_never_picks_masked_tokens():
  rng = np.random.default_rng(4)
  logits = rng.standard_normal((6, 37)).astype(np.float32)
  logits[:, ::3] = -np.inf  # masked tokens, including the last one
  u = np.array([0.0, 0.2, 0.5, 0.77, 0.999, np.nextafter(np.float32(1), np.float32(0))], np.float32)
  got = np.asarray(jax.jit(inverse_cdf_draw)(jnp.asarray(logits), jnp.asarray(u)))
  p = np.exp(logits.astype(np.float64) - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  ref = np.array([np.searchsorted(np.cumsum(pi), ui, side="right") for pi, ui in zip(p, u)])
  ref = np.minimum(ref, 36)
  np.testing.assert_array_equal(got[:5], ref[:5])
  assert np.all(np.isfinite(logits[np.arange(6), got])), got
  assert got[5] == np.flatnonzero(np.isfinite(logits[5]))[-1]  # u just below 1: the last live token


def test_top_p_filter_with_masked_entries_keeps_at_least_one():
  logits = jnp.asarray([[3.0, -jnp.inf, 1.0, 0.5], [-jnp.inf, -jnp.inf, 2.0, -jnp.inf]])
  out = np.asarray(jax.jit(top_p_filter)(logits, jnp.float32(0.01)))
  np.testing.assert_array_equal(np.isfinite(out), [[True, False, False, False], [False, False, True, False]])
