"""KL estimators against direct NumPy transcriptions (fp64), exact expectations, and extremes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rl.kl import kl_estimate


def _np_kl(logp, ref, kind, clamp=20.0, k3_max=10.0):
  """Literal formulas; k3 written with probabilities as in the paper's eq. 2."""
  log_ratio = np.clip(ref - logp, -clamp, clamp)
  if kind == "k1":
    return -log_ratio
  if kind == "k2":
    return 0.5 * log_ratio ** 2
  ref_over_theta = np.exp(log_ratio)  # pi_ref / pi_theta
  return np.minimum(ref_over_theta - np.log(ref_over_theta) - 1.0, k3_max)


def _np_kl_grad(logp, ref, kind, clamp=20.0, k3_max=10.0):
  """d KL / d logp, derived by hand (zero where a clamp or the k3 cap is active)."""
  inside = np.abs(ref - logp) < clamp
  if kind == "k1":
    grad = np.ones_like(logp)
  elif kind == "k2":
    grad = logp - ref
  else:
    grad = 1.0 - np.exp(ref - logp)
    inside &= _np_kl(logp, ref, "k3", clamp, np.inf) < k3_max
  return np.where(inside, grad, 0.0)


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_matches_numpy_value_and_grad_fp64(kind):
  rng = np.random.default_rng(0)
  logp = -rng.exponential(2.0, size=(4, 9))
  ref = logp + rng.normal(0.0, 1.5, size=logp.shape)
  with jax.enable_x64(True):
    value = kl_estimate(jnp.asarray(logp), jnp.asarray(ref), kind=kind)
    total = lambda x: jnp.sum(kl_estimate(x, jnp.asarray(ref), kind=kind))
    grad = jax.grad(total)(jnp.asarray(logp))
    assert value.dtype == jnp.float64
  np.testing.assert_allclose(np.asarray(value), _np_kl(logp, ref, kind), rtol=0, atol=1e-12)
  np.testing.assert_allclose(np.asarray(grad), _np_kl_grad(logp, ref, kind), rtol=0, atol=1e-12)


def test_k1_and_k3_are_unbiased_under_the_policy():
  """E_{x ~ pi_theta}[k] = KL(pi_theta || pi_ref) exactly for k1 and k3 (not for k2).

  Clamp and cap are off: with them, rare tokens with pi_ref >> pi_theta are capped (biased)."""
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    logp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=50)))
    ref = jax.nn.log_softmax(jnp.asarray(rng.normal(size=50)))
    probs = np.exp(np.asarray(logp))
    exact = float(np.sum(probs * (np.asarray(logp) - np.asarray(ref))))
    expect = {k: float(jnp.sum(probs * kl_estimate(logp, ref, kind=k, clamp=None, k3_max=None)))
              for k in ("k1", "k2", "k3")}
  assert exact > 0.1
  assert expect["k1"] == pytest.approx(exact, abs=1e-12)
  assert expect["k3"] == pytest.approx(exact, abs=1e-12)
  assert abs(expect["k2"] - exact) > 1e-3  # k2 is biased: the test can tell them apart.


def test_k3_is_nonnegative_and_zero_on_policy():
  rng = np.random.default_rng(2)
  logp = jnp.asarray(-rng.exponential(3.0, size=1000), jnp.float32)
  ref = logp + jnp.asarray(rng.normal(0, 3.0, size=1000), jnp.float32)
  assert float(jnp.min(kl_estimate(logp, ref))) >= 0.0
  np.testing.assert_array_equal(np.asarray(kl_estimate(logp, logp)), 0.0)


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_huge_log_ratios_stay_finite_and_clamped(kind):
  logp = jnp.array([0.0, -1e4, -1e30, 0.0, -3.0], jnp.float32)
  ref = jnp.array([-1e4, 0.0, 0.0, -1e30, -3.0], jnp.float32)
  value, grad = jax.value_and_grad(lambda x: jnp.sum(kl_estimate(x, ref, kind=kind)))(logp)
  per_token = kl_estimate(logp, ref, kind=kind)
  assert np.all(np.isfinite(np.asarray(per_token))) and np.isfinite(float(value))
  assert np.all(np.isfinite(np.asarray(grad)))
  np.testing.assert_array_equal(np.asarray(grad)[:4], 0.0)  # clamped: no gradient
  if kind == "k3":
    assert float(jnp.max(per_token)) == 10.0  # capped at k3_max
  if kind == "k1":
    np.testing.assert_allclose(np.asarray(per_token)[:4], [20.0, -20.0, -20.0, 20.0])


def test_bad_arguments_raise():
  x = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="kind must be one of"):
    kl_estimate(x, x, kind="k4")
  with pytest.raises(ValueError, match="same shape"):
    kl_estimate(x, jnp.zeros((3, 2)))
