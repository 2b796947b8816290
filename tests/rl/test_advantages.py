"""Group advantages against a NumPy transcription of eq. 3, with explicit, unordered groups."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rl.advantages import group_advantages, kl_penalized_rewards


def _np_advantages(rewards, group_ids, scale_by_std, eps, ddof):
  out = np.zeros_like(rewards)
  zero_std = 0
  groups = np.unique(group_ids)
  for g in groups:
    members = np.flatnonzero(group_ids == g)
    r = rewards[members]
    if np.all(r == r[0]):
      zero_std += 1
      continue  # stays 0
    centred = r - r.mean()
    out[members] = centred / (r.std(ddof=ddof) + eps) if scale_by_std else centred
  return out, zero_std / len(groups)


def _shuffled_groups(rng, num_groups, group_size):
  ids = np.repeat(np.arange(num_groups), group_size)
  return rng.permutation(ids).astype(np.int32)  # interleaved: order says nothing


@pytest.mark.parametrize("scale_by_std", [True, False])
@pytest.mark.parametrize("ddof", [0, 1])
def test_matches_numpy_fp64(scale_by_std, ddof):
  rng = np.random.default_rng(0)
  ids = _shuffled_groups(rng, num_groups=6, group_size=5)
  rewards = rng.normal(size=ids.shape)
  rewards[ids == 2] = 0.7  # one all-equal group
  rewards[ids == 4] = [1.0, 0.0, 0.0, 1.0, 0.0]  # binary rewards
  expected, frac = _np_advantages(rewards, ids, scale_by_std, 1e-6, ddof)
  with jax.enable_x64(True):
    adv, stats = group_advantages(jnp.asarray(rewards), jnp.asarray(ids), 6,
                                  scale_by_std=scale_by_std, eps=1e-6, ddof=ddof)
    assert adv.dtype == jnp.float64
  np.testing.assert_allclose(np.asarray(adv), expected, rtol=0, atol=1e-12)
  assert float(stats["frac_zero_std_groups"]) == pytest.approx(frac)
  assert int(stats["num_zero_std_groups"]) == round(frac * 6)
  assert float(stats["advantage_max"]) == pytest.approx(expected.max(), abs=1e-12)


def test_membership_comes_from_ids_not_order():
  rng = np.random.default_rng(1)
  ids = _shuffled_groups(rng, 4, 4)
  rewards = rng.normal(size=16).astype(np.float32)
  adv, _ = group_advantages(rewards, ids, 4)
  perm = rng.permutation(16)
  adv_perm, _ = group_advantages(rewards[perm], ids[perm], 4)
  np.testing.assert_allclose(np.asarray(adv_perm), np.asarray(adv)[perm], atol=1e-6)
  # Same rewards with contiguous ids give different advantages: the ids matter.
  adv_contig, _ = group_advantages(rewards, np.repeat(np.arange(4), 4).astype(np.int32), 4)
  assert not np.allclose(np.asarray(adv_contig), np.asarray(adv), atol=1e-3)


def test_all_equal_groups_get_exact_zero_and_are_counted():
  # 0.1 x 3 has a float mean != 0.1, so a naive (r - mean) / (std + eps) is ~1e-2, not 0.
  rewards = jnp.array([0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 0.0, 1.0, 5.0], jnp.float32)
  ids = jnp.array([0, 0, 0, 1, 1, 1, 2, 2, 3], jnp.int32)  # group 3 has a single output
  adv, stats = group_advantages(rewards, ids, num_groups=5)  # id 4 is unused
  adv = np.asarray(adv)
  assert np.all(np.isfinite(adv))
  np.testing.assert_array_equal(adv[[0, 1, 2, 3, 4, 5, 8]], 0.0)
  np.testing.assert_allclose(adv[6:8], [-0.5 / (np.sqrt(0.5) + 1e-6), 0.5 / (np.sqrt(0.5) + 1e-6)],
                             rtol=1e-6)
  assert int(stats["num_zero_std_groups"]) == 3
  assert float(stats["frac_zero_std_groups"]) == pytest.approx(3 / 4)  # unused group ignored


def test_works_under_jit_with_traced_ids():
  rewards = jnp.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
  ids = jnp.array([0, 1, 0, 1, 0, 1], jnp.int32)
  f = jax.jit(lambda r, i: group_advantages(r, i, 2)[0])
  np.testing.assert_allclose(np.asarray(f(rewards, ids)),
                             np.asarray(group_advantages(rewards, ids, 2)[0]))


def test_bad_inputs_raise_naming_the_argument():
  r = jnp.zeros(4)
  with pytest.raises(ValueError, match=r"group_ids must lie in \[0, 2\)"):
    group_advantages(r, jnp.array([0, 1, 2, 0]), 2)
  with pytest.raises(ValueError, match="group_ids must have shape"):
    group_advantages(r, jnp.array([0, 1]), 2)
  with pytest.raises(ValueError, match="group_ids must be integers"):
    group_advantages(r, jnp.zeros(4), 2)
  with pytest.raises(ValueError, match="rewards must be 1-D"):
    group_advantages(jnp.zeros((2, 2)), jnp.array([0, 1, 0, 1]), 2)
  with pytest.raises(ValueError, match="num_groups"):
    group_advantages(r, jnp.array([0, 0, 0, 0]), 0)


def test_kl_penalized_rewards_match_numpy_and_carry_no_gradient():
  rng = np.random.default_rng(3)
  logp = -rng.exponential(size=(3, 5))
  ref = logp + rng.normal(size=(3, 5))
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
  rewards = np.array([1.0, 0.0, 1.0])
  with jax.enable_x64(True):
    out, seq_kl = kl_penalized_rewards(jnp.asarray(rewards), jnp.asarray(logp), jnp.asarray(ref),
                                       jnp.asarray(mask), 0.1, kind="k3")
    grad = jax.grad(lambda lp: jnp.sum(kl_penalized_rewards(
        jnp.asarray(rewards), lp, jnp.asarray(ref), jnp.asarray(mask), 0.1)[0]))(jnp.asarray(logp))
  ratio = np.exp(ref - logp)
  expected_kl = np.sum(np.where(mask, ratio - np.log(ratio) - 1, 0.0), axis=-1)
  np.testing.assert_allclose(np.asarray(seq_kl), expected_kl, atol=1e-12)
  np.testing.assert_allclose(np.asarray(out), rewards - 0.1 * expected_kl, atol=1e-12)
  np.testing.assert_array_equal(np.asarray(grad), 0.0)
