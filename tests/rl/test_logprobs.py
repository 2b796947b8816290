"""Fused chunked log-prob kernel against the full-logits path, NumPy, sharding and memory."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from r1jax.rl.config import GRPOConfig
from r1jax.rl.logprobs import naive_token_logprobs, token_logprobs
from r1jax.rl.loss import grpo_loss


def _inputs(batch, length, dim, vocab, seed=0, dtype=jnp.float32):
  rng = np.random.default_rng(seed)  # NumPy: eager jax.random would compile per shape.
  hidden = jnp.asarray(rng.normal(size=(batch, length, dim)), dtype)
  head = jnp.asarray(rng.normal(size=(dim, vocab)) * 2.0 / np.sqrt(dim), dtype)
  targets = jnp.asarray(rng.integers(0, vocab, size=(batch, length)), jnp.int32)
  return hidden, head, targets


def _np_logprobs_entropy(hidden, head, targets):
  logits = np.asarray(hidden, np.float64) @ np.asarray(head, np.float64)
  logits -= logits.max(-1, keepdims=True)
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  logp = np.take_along_axis(log_softmax, np.asarray(targets)[..., None], -1)[..., 0]
  return logp, -(np.exp(log_softmax) * log_softmax).sum(-1)


def _weighted(fn, weights_lp, weights_ent):
  """A scalar of both outputs with distinct per-token weights, so every cotangent matters."""
  def f(hidden, head, targets):
    logp, entropy = fn(hidden, head, targets)
    return jnp.sum(logp * weights_lp) + jnp.sum(entropy * weights_ent)
  return f


@pytest.mark.parametrize("shape,chunk", [((3, 7, 16, 50), 4),   # padding: 21 tokens, chunks of 4
                                         ((2, 5, 8, 40), 64),   # chunk > tokens
                                         ((1, 6, 4, 11), 1)])   # one token per chunk
def test_fused_equals_naive_and_numpy_fp64(shape, chunk):
  with jax.enable_x64(True):
    hidden, head, targets = _inputs(*shape, dtype=jnp.float64)
    rng = np.random.default_rng(7)
    w_lp = jnp.asarray(rng.normal(size=shape[:2]))
    w_ent = jnp.asarray(rng.normal(size=shape[:2]))
    fused = lambda h, w, t: token_logprobs(h, w, t, chunk_size=chunk, compute_entropy=True)
    naive = lambda h, w, t: naive_token_logprobs(h, w, t, compute_entropy=True)

    @jax.jit
    def both(hidden, head, targets):
      return [(fn(hidden, head, targets),
               jax.grad(_weighted(fn, w_lp, w_ent), argnums=(0, 1))(hidden, head, targets))
              for fn in (fused, naive)]

    (out_f, grads_f), (out_n, grads_n) = both(hidden, head, targets)
    assert out_f[0].dtype == jnp.float64 and grads_f[1].dtype == jnp.float64
  np_logp, np_ent = _np_logprobs_entropy(hidden, head, targets)
  np.testing.assert_allclose(np.asarray(out_f[0]), np_logp, rtol=0, atol=1e-12)
  np.testing.assert_allclose(np.asarray(out_f[1]), np_ent, rtol=0, atol=1e-12)
  for f, n in zip(out_f + grads_f, out_n + grads_n):
    np.testing.assert_allclose(np.asarray(f), np.asarray(n), rtol=0, atol=1e-12)


def test_tempered_fused_equals_numpy_and_naive_in_value_and_gradient():
  """temperature T: log softmax(h @ W / T), values against NumPy, gradients against the naive path."""
  T = 0.7
  with jax.enable_x64(True):
    hidden, head, targets = _inputs(2, 5, 8, 30, seed=3, dtype=jnp.float64)
    rng = np.random.default_rng(4)
    w_lp, w_ent = jnp.asarray(rng.normal(size=(2, 5))), jnp.asarray(rng.normal(size=(2, 5)))
    fused = lambda h, w, t: token_logprobs(h, w, t, chunk_size=3, compute_entropy=True, temperature=T)
    naive = lambda h, w, t: naive_token_logprobs(h, w, t, compute_entropy=True, temperature=T)
    outs = [(fn(hidden, head, targets), jax.grad(_weighted(fn, w_lp, w_ent), argnums=(0, 1))(hidden, head, targets))
            for fn in (fused, naive)]
    untempered = token_logprobs(hidden, head, targets, chunk_size=3)
  np_logp, np_ent = _np_logprobs_entropy(hidden, np.asarray(head) / T, targets)
  (out_f, grads_f), (out_n, grads_n) = outs
  np.testing.assert_allclose(np.asarray(out_f[0]), np_logp, rtol=0, atol=1e-12)
  np.testing.assert_allclose(np.asarray(out_f[1]), np_ent, rtol=0, atol=1e-12)
  for f, n in zip(out_f + grads_f, out_n + grads_n):
    np.testing.assert_allclose(np.asarray(f), np.asarray(n), rtol=0, atol=1e-12)
  assert np.abs(np.asarray(untempered) - np_logp).max() > 1e-2  # the temperature really acts
  with pytest.raises(ValueError, match="temperature"):
    token_logprobs(hidden, head, targets, temperature=0.0)


def _tiny_model(params, ids):
  """Stand-in policy: embed, one tanh layer, RMS norm -> hidden [B, T, D]; head is a param."""
  x = params["embed"][ids]
  x = jnp.tanh(x @ params["w"])
  return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6)


@pytest.mark.parametrize("tied", [False, True])
def test_fused_grpo_loss_equals_naive_in_value_and_param_gradient(tied):
  batch, length, dim, vocab = 4, 12, 16, 97
  rng = np.random.default_rng(3)
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  params = {"embed": normal(vocab, dim), "w": normal(dim, dim) / 4}
  if not tied:
    params["head"] = normal(dim, vocab) / 4
  ids = jnp.asarray(rng.integers(0, vocab, size=(batch, length + 1)), jnp.int32)
  old_noise, ref_noise = 0.3 * normal(batch, length), 0.5 * normal(batch, length)
  inputs, targets = ids[:, :-1], ids[:, 1:]
  mask = jnp.arange(length)[None, :] < jnp.array([[12], [5], [9], [1]])
  advantages = jnp.array([1.0, -0.5, 0.3, -1.2])
  cfg = GRPOConfig(clip_eps_low=0.2, clip_eps_high=0.28, beta=0.05)

  def loss(params, logprob_fn):
    head = params["embed"].T if tied else params["head"]
    logp = logprob_fn(_tiny_model(params, inputs), head, targets)
    old = jax.lax.stop_gradient(logp) + old_noise
    ref = jax.lax.stop_gradient(logp) + ref_noise
    return grpo_loss(logp, old, ref, advantages, mask, cfg)[0]

  fused = lambda h, w, t: token_logprobs(h, w, t, chunk_size=8)
  both = jax.jit(lambda p: [jax.value_and_grad(loss)(p, fn)
                            for fn in (fused, naive_token_logprobs)])
  (value_f, grads_f), (value_n, grads_n) = both(params)
  assert abs(float(value_f) - float(value_n)) <= 1e-5
  for name in params:
    assert float(jnp.max(jnp.abs(grads_n[name]))) > 1e-3, name  # the gradient is really there
    np.testing.assert_allclose(np.asarray(grads_f[name]), np.asarray(grads_n[name]),
                               rtol=0, atol=1e-5, err_msg=name)


def test_bf16_hidden_gives_fp32_logprobs_matching_naive():
  hidden, head, targets = _inputs(2, 16, 32, 300, seed=4, dtype=jnp.bfloat16)

  @jax.jit
  def run(hidden, head):
    fused = lambda h, w: token_logprobs(h, w, targets, chunk_size=8)
    grads = jax.grad(lambda h, w: jnp.sum(fused(h, w)), argnums=(0, 1))(hidden, head)
    return fused(hidden, head), naive_token_logprobs(hidden, head, targets), grads

  logp, logp_naive, grads = run(hidden, head)
  assert logp.dtype == jnp.float32
  assert grads[0].dtype == jnp.bfloat16 and grads[1].dtype == jnp.bfloat16
  ref = _np_logprobs_entropy(np.asarray(hidden, np.float32), np.asarray(head, np.float32),
                             targets)[0]
  np.testing.assert_allclose(np.asarray(logp), ref, atol=2e-4)
  np.testing.assert_allclose(np.asarray(logp), np.asarray(logp_naive), atol=2e-5)


def test_out_of_range_targets_stay_finite():
  hidden, head, _ = _inputs(1, 4, 8, 10)
  targets = jnp.array([[-1, 3, 10, 9]], jnp.int32)
  logp = token_logprobs(hidden, head, targets, chunk_size=2)
  assert np.all(np.isfinite(np.asarray(logp)))


def test_sharded_inputs_match_and_never_gather_tokens(devices8):
  mesh = Mesh(np.array(devices8).reshape(4, 2), ("data", "tensor"))
  hidden, head, targets = _inputs(8, 32, 16, 256, seed=5)
  w_lp = jnp.cos(jnp.arange(32.0))[None, :]
  fused = lambda h, w, t: token_logprobs(h, w, t, chunk_size=64, compute_entropy=True)
  naive = lambda h, w, t: naive_token_logprobs(h, w, t, compute_entropy=True)
  step = jax.jit(jax.value_and_grad(_weighted(fused, w_lp, 0.3), argnums=(0, 1)))
  sharded = (jax.device_put(hidden, NamedSharding(mesh, P("data", None, None))),
             jax.device_put(head, NamedSharding(mesh, P(None, "tensor"))),
             jax.device_put(targets, NamedSharding(mesh, P("data", None))))
  value, (d_hidden, d_head) = step(*sharded)
  value_n, (d_hidden_n, d_head_n) = jax.jit(jax.value_and_grad(
      _weighted(naive, w_lp, 0.3), argnums=(0, 1)))(hidden, head, targets)
  assert abs(float(value) - float(value_n)) <= 1e-5 * abs(float(value_n))
  np.testing.assert_allclose(np.asarray(d_hidden), np.asarray(d_hidden_n), atol=1e-5)
  np.testing.assert_allclose(np.asarray(d_head), np.asarray(d_head_n), atol=1e-5)
  assert d_hidden.sharding.spec == P("data", None, None)
  # Each device keeps its own tokens: the strided chunks never gather the token axis.
  assert "all-gather" not in step.lower(*sharded).compile().as_text()


def _temp_bytes(logprob_fn, vocab, tokens=8192, dim=64):
  cfg = GRPOConfig(beta=0.0, loss_aggregation="token_mean")

  def loss(hidden, head, targets, old, advantages, mask):
    logp = logprob_fn(hidden, head, targets)
    return grpo_loss(logp, old, None, advantages, mask, cfg)[0]

  batch, length = 8, tokens // 8
  spec = jax.ShapeDtypeStruct
  args = (spec((batch, length, dim), jnp.float32), spec((dim, vocab), jnp.float32),
          spec((batch, length), jnp.int32), spec((batch, length), jnp.float32),
          spec((batch,), jnp.float32), spec((batch, length), jnp.bool_))
  compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(*args).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_fused_temp_memory_does_not_scale_like_full_logits():
  chunk = 512
  fused = lambda h, w, t: token_logprobs(h, w, t, chunk_size=chunk)
  naive = {v: _temp_bytes(naive_token_logprobs, v) for v in (8192, 65536)}
  fused_b = {v: _temp_bytes(fused, v) for v in (8192, 65536)}
  full_logits = 8192 * 65536 * 4
  chunk_logits = chunk * 65536 * 4
  assert naive[65536] >= full_logits  # at least one [B*T, V] fp32 buffer
  assert naive[65536] / naive[8192] > 7.0  # grows ~ V
  assert fused_b[65536] <= 4 * chunk_logits  # a few [chunk, V] buffers, never [B*T, V]
  assert naive[65536] / fused_b[65536] > 10.0


def test_bad_inputs_raise_naming_the_argument():
  hidden, head, targets = _inputs(2, 3, 4, 5)
  with pytest.raises(ValueError, match=r"hidden must be \[B, T, D\]"):
    token_logprobs(hidden[0], head, targets)
  with pytest.raises(ValueError, match=r"head must be \[D, V\]"):
    token_logprobs(hidden, head.T, targets)
  with pytest.raises(ValueError, match=r"targets must be \[B, T\]"):
    token_logprobs(hidden, head, targets[:, :2])
  with pytest.raises(ValueError, match="targets must be integer"):
    token_logprobs(hidden, head, targets.astype(jnp.float32))
  with pytest.raises(ValueError, match="chunk_size must be a positive int"):
    token_logprobs(hidden, head, targets, chunk_size=0)


def test_entropy_as_a_logged_value_has_no_gradient_and_the_same_value():
  """entropy_grad=False (GRPO logs the entropy): same values, and the entropy's cotangent is
  ignored, so the gradient is that of the log-probs alone."""
  rng = np.random.default_rng(11)
  hidden = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
  head = jnp.asarray(rng.normal(size=(8, 13)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 13, size=(2, 5)), jnp.int32)

  def total(h, w, entropy_grad):
    lp, ent = token_logprobs(h, w, targets, chunk_size=4, compute_entropy=True, entropy_grad=entropy_grad)
    return lp.sum() + 3.0 * ent.sum(), (lp, ent)

  (_, (lp, ent)), g_with = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(hidden, head, True)
  (_, (lp2, ent2)), g_logged = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(hidden, head, False)
  g_logp = jax.grad(lambda h, w: token_logprobs(h, w, targets, chunk_size=4).sum(), argnums=(0, 1))(hidden, head)
  np.testing.assert_array_equal(np.asarray(lp2), np.asarray(lp))
  np.testing.assert_array_equal(np.asarray(ent2), np.asarray(ent))
  for a, b, c in zip(g_logged, g_logp, g_with):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    assert float(jnp.max(jnp.abs(c - b))) > 1e-3  # the differentiable entropy does move the gradient
