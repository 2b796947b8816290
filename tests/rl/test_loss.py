"""GRPO loss against a direct NumPy transcription of eq. 1-3 (fp64), gradient accumulation,
on-policy sanity, extremes, masking, metrics and the config/presets."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rl.advantages import group_advantages
from r1jax.rl.config import LEARNING_RATES, RECIPES, GRPOConfig, get_recipe, r1_recipe
from r1jax.rl.logprobs import token_logprobs
from r1jax.rl.loss import grpo_loss


# ----------------------------------------------------------------------------- NumPy reference
def _np_kl_and_grad(logp, ref, kind, clamp, k3_max):
  log_ratio = ref - logp
  inside = abs(log_ratio) < clamp
  log_ratio = min(max(log_ratio, -clamp), clamp)
  if kind == "k1":
    return -log_ratio, float(inside)
  if kind == "k2":
    return 0.5 * log_ratio ** 2, -log_ratio * inside
  ref_over_theta = math.exp(log_ratio)  # pi_ref / pi_theta, eq. 2
  k3 = ref_over_theta - math.log(ref_over_theta) - 1.0
  if k3 >= k3_max:
    return k3_max, 0.0
  return k3, (1.0 - ref_over_theta) * inside


def _np_grpo(logp, old, ref, adv, mask, cfg, max_len_norm=None, total_tokens=None,
             total_sequences=None):
  """Loss = -J(theta) of eq. 1, and d loss / d logp, written token by token."""
  lengths = mask.sum(1)
  num_seqs = total_sequences if total_sequences is not None else max((lengths > 0).sum(), 1)
  num_tokens = total_tokens if total_tokens is not None else max(mask.sum(), 1)
  length_norm = max_len_norm if max_len_norm is not None else cfg.length_normaliser
  use_kl = cfg.kl_mode == "loss" and cfg.beta > 0
  low, high = 1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high
  loss, grad = 0.0, np.zeros_like(logp)
  for i in range(logp.shape[0]):
    for t in range(logp.shape[1]):
      if not mask[i, t]:
        continue
      if cfg.loss_aggregation == "seq_mean":
        weight = 1.0 / (lengths[i] * num_seqs)
      elif cfg.loss_aggregation == "token_mean":
        weight = 1.0 / num_tokens
      else:
        weight = 1.0 / (num_seqs * length_norm)
      a = adv[i]
      diff = logp[i, t] - old[i, t]
      ratio = math.exp(min(max(diff, -cfg.log_ratio_clamp), cfg.log_ratio_clamp))
      d_ratio = ratio if abs(diff) < cfg.log_ratio_clamp else 0.0
      unclipped, clipped = ratio * a, min(max(ratio, low), high) * a
      if unclipped <= clipped:
        objective, d_objective = unclipped, d_ratio * a
      else:  # the clipped branch is smaller: the ratio is outside the range, no gradient
        objective, d_objective = clipped, 0.0
      term, d_term = -objective, -d_objective
      if cfg.dual_clip_c is not None and a < 0 and term > -cfg.dual_clip_c * a:
        term, d_term = -cfg.dual_clip_c * a, 0.0
      if use_kl:
        kl, d_kl = _np_kl_and_grad(logp[i, t], ref[i, t], cfg.kl_estimator,
                                   cfg.kl_log_ratio_clamp, cfg.kl_k3_max)
        term, d_term = term + cfg.beta * kl, d_term + cfg.beta * d_kl
      loss += weight * term
      grad[i, t] = weight * d_term
  return loss, grad


def _batch(seed=0, batch=6, length=8, spread=0.7):
  rng = np.random.default_rng(seed)
  logp = -rng.exponential(1.5, size=(batch, length))
  old = logp + rng.normal(0.0, spread, size=logp.shape)
  ref = logp + rng.normal(0.0, 1.0, size=logp.shape)
  lengths = rng.integers(1, length + 1, size=batch)
  lengths[-1] = 0  # one padding row: never counts
  mask = np.arange(length)[None, :] < lengths[:, None]
  adv = rng.normal(size=batch)
  return logp, old, ref, adv, mask


def _jax_value_and_grad(cfg, logp, old, ref, adv, mask, **kwargs):
  with jax.enable_x64(True):
    args = [None if x is None else jnp.asarray(x) for x in (old, ref, adv, mask)]
    f = jax.jit(jax.value_and_grad(lambda lp: grpo_loss(lp, *args[:2], args[2], args[3], cfg,
                                                        **kwargs)[0]))
    value, grad = f(jnp.asarray(logp))
    assert value.dtype == jnp.float64
    return float(value), np.asarray(grad)


BASE = dict(clip_eps_low=0.2, clip_eps_high=0.28, beta=0.04)


@pytest.mark.parametrize("aggregation", ["seq_mean", "token_mean", "seq_sum_norm"])
@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_matches_numpy_for_every_mode_and_estimator(aggregation, estimator):
  cfg = GRPOConfig(**BASE, loss_aggregation=aggregation, kl_estimator=estimator, max_len_norm=10)
  logp, old, ref, adv, mask = _batch(seed=1)
  expected, expected_grad = _np_grpo(logp, old, ref, adv, mask, cfg)
  value, grad = _jax_value_and_grad(cfg, logp, old, ref, adv, mask)
  assert value == pytest.approx(expected, rel=0, abs=1e-9)
  np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=1e-9)
  assert np.count_nonzero(grad) > 10


@pytest.mark.parametrize("overrides", [
    dict(dual_clip_c=3.0),
    dict(kl_mode="reward"),  # KL goes into the reward: the loss has no KL term
    dict(beta=0.0),
    dict(),  # the R1 recipe: eps = 10, beta = 0.001, k3
    dict(loss_aggregation="seq_sum_norm", scale_rewards_by_std=False),  # max_len_norm from cfg
])
def test_matches_numpy_for_variants(overrides):
  cfg = GRPOConfig(**overrides) if not overrides else GRPOConfig(**{**BASE, **overrides})
  logp, old, ref, adv, mask = _batch(seed=2, spread=1.5)
  if cfg.dual_clip_c is not None:  # the data really exercises the dual clip
    assert np.sum(mask & (adv[:, None] < 0) & (np.exp(logp - old) > cfg.dual_clip_c)) > 0
  expected, expected_grad = _np_grpo(logp, old, ref, adv, mask, cfg)
  value, grad = _jax_value_and_grad(cfg, logp, old, ref, adv, mask)
  assert value == pytest.approx(expected, rel=0, abs=1e-9)
  np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=1e-9)


def test_global_normalisers_and_max_len_norm_argument_match_numpy():
  logp, old, ref, adv, mask = _batch(seed=3)
  for aggregation in ("seq_mean", "token_mean", "seq_sum_norm"):
    cfg = GRPOConfig(**BASE, loss_aggregation=aggregation)
    kwargs = dict(total_tokens=100.0, total_sequences=17.0, max_len_norm=12)
    expected, expected_grad = _np_grpo(logp, old, ref, adv, mask, cfg, **kwargs)
    value, grad = _jax_value_and_grad(cfg, logp, old, ref, adv, mask, **kwargs)
    assert value == pytest.approx(expected, rel=0, abs=1e-9)
    np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=1e-9)


def test_clipping_acts_on_the_correct_side_for_both_signs():
  """Gradient is zero exactly where the clip binds: A > 0 above 1 + eps, A < 0 below 1 - eps."""
  cfg = GRPOConfig(clip_eps_low=0.2, clip_eps_high=0.3, beta=0.0)
  ratios = np.array([0.5, 0.9, 1.1, 1.5])  # below, inside, inside, above
  logp = np.zeros((2, 4))
  old = -np.log(ratios)[None, :].repeat(2, 0)
  adv = np.array([1.0, -1.0])
  _, grad = _jax_value_and_grad(cfg, logp, old, None, adv, np.ones((2, 4), bool))
  w = 1.0 / (4 * 2)
  np.testing.assert_allclose(grad[0], [-w * 0.5, -w * 0.9, -w * 1.1, 0.0], atol=1e-12)
  np.testing.assert_allclose(grad[1], [0.0, w * 0.9, w * 1.1, w * 1.5], atol=1e-12)


def test_on_policy_gradient_is_the_plain_policy_gradient():
  """With logp = old_logp and beta = 0: grad = -sum_i A_i / (|o_i| G) sum_t grad log pi."""
  rng = np.random.default_rng(4)
  batch, length, dim, vocab = 4, 6, 8, 23
  hidden = jnp.asarray(rng.normal(size=(batch, length, dim)), jnp.float32)
  head = jnp.asarray(rng.normal(size=(dim, vocab)) / 3, jnp.float32)
  targets = jnp.asarray(rng.integers(0, vocab, size=(batch, length)), jnp.int32)
  mask = jnp.arange(length)[None, :] < jnp.array([[6], [2], [4], [5]])
  adv = jnp.asarray([1.0, -2.0, 0.5, -0.3], jnp.float32)
  cfg = GRPOConfig(beta=0.0)

  def grpo(head):
    logp = token_logprobs(hidden, head, targets, chunk_size=5)
    return grpo_loss(logp, jax.lax.stop_gradient(logp), None, adv, mask, cfg)[0]

  def policy_gradient(head):
    logp = token_logprobs(hidden, head, targets, chunk_size=5)
    weights = mask / jnp.sum(mask, axis=1, keepdims=True) / batch
    return -jnp.sum(weights * adv[:, None] * logp)

  g_grpo, g_pg = jax.jit(lambda w: (jax.grad(grpo)(w), jax.grad(policy_gradient)(w)))(head)
  assert float(jnp.max(jnp.abs(g_pg))) > 1e-2
  np.testing.assert_allclose(np.asarray(g_grpo), np.asarray(g_pg), atol=1e-6)


@pytest.mark.parametrize("aggregation", ["seq_mean", "token_mean", "seq_sum_norm"])
def test_huge_log_ratios_and_garbage_padding_stay_finite(aggregation):
  cfg = GRPOConfig(clip_eps_low=0.2, clip_eps_high=0.2, beta=0.1, loss_aggregation=aggregation)
  logp = jnp.array([[0.0, -1e4, -1e30, -2.0], [-1e4, 0.0, -3.0, 0.0]], jnp.float32)
  old = jnp.array([[-1e4, 0.0, 0.0, jnp.nan], [0.0, -1e30, -3.0, jnp.inf]], jnp.float32)
  ref = jnp.array([[-1e30, 0.0, -1e4, -jnp.inf], [0.0, -1e4, -1.0, jnp.nan]], jnp.float32)
  mask = jnp.array([[1, 1, 1, 0], [1, 1, 1, 0]], bool)
  adv = jnp.array([-1.5, 2.0])
  (value, metrics), grad = jax.jit(jax.value_and_grad(
      lambda lp: grpo_loss(lp, old, ref, adv, mask, cfg), has_aux=True))(logp)
  assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
  assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
  assert float(metrics["ratio_max"]) == pytest.approx(math.exp(20.0), rel=1e-5)


def test_mask_counts_every_completion_token_including_stop_and_ignores_padding():
  logp, old, ref, adv, mask = _batch(seed=5)
  cfg = r1_recipe()
  _, grad = _jax_value_and_grad(cfg, logp, old, ref, adv, mask)
  np.testing.assert_array_equal(grad != 0, mask)  # the last (stop) token of each row included
  garbage = np.where(mask, logp, np.nan), np.where(mask, old, np.inf), np.where(mask, ref, -np.inf)
  value2, grad2 = _jax_value_and_grad(cfg, *garbage, adv, mask)
  value, _ = _jax_value_and_grad(cfg, logp, old, ref, adv, mask)
  assert value2 == value
  np.testing.assert_array_equal(grad2, grad)


def test_gradient_accumulation_1_2_and_G_microbatches_equal_full_batch():
  """Split at group boundaries, pass the full batch's normalisers: summed grads are identical
  (every aggregation mode, all in one program per microbatch size)."""
  num_groups = group_size = 4
  batch, length, dim, vocab = num_groups * group_size, 7, 8, 31
  rng = np.random.default_rng(6)  # NumPy data, sliced in NumPy: no eager per-shape compiles
  hidden = rng.normal(size=(batch, length, dim)).astype(np.float32)
  head = jnp.asarray(rng.normal(size=(dim, vocab)) / 3, jnp.float32)
  targets = rng.integers(0, vocab, size=(batch, length)).astype(np.int32)
  mask = np.arange(length)[None, :] < rng.integers(1, length + 1, size=(batch, 1))
  group_ids = np.repeat(np.arange(num_groups), group_size).astype(np.int32)
  rewards = rng.integers(0, 2, size=batch).astype(np.float32)
  adv = np.asarray(jax.jit(group_advantages, static_argnums=2)(rewards, group_ids, num_groups)[0])
  old_shift = rng.normal(0, 0.3, size=(batch, length)).astype(np.float32)
  ref_shift = rng.normal(0, 0.3, size=(batch, length)).astype(np.float32)
  aggregations = ("seq_mean", "token_mean", "seq_sum_norm")
  cfgs = {a: GRPOConfig(**BASE, loss_aggregation=a, max_len_norm=length) for a in aggregations}
  base = {"hidden": hidden, "targets": targets, "old_shift": old_shift, "ref_shift": ref_shift,
          "adv": adv, "mask": mask}

  @jax.jit  # compiled once per microbatch size
  def microbatch_grad(head, mb, total_tokens, total_sequences):
    def loss(head, cfg):
      logp = token_logprobs(mb["hidden"], head, mb["targets"], chunk_size=16)
      anchor = jax.lax.stop_gradient(logp)
      return grpo_loss(logp, anchor + mb["old_shift"], anchor + mb["ref_shift"], mb["adv"],
                       mb["mask"], cfg, total_tokens=total_tokens,
                       total_sequences=total_sequences)[0]
    return {a: jax.grad(loss)(head, cfg) for a, cfg in cfgs.items()}

  def accumulated(k, global_normalisers=True):
    total = {a: 0.0 for a in aggregations}
    for rows in np.split(np.arange(batch), k):  # contiguous rows = whole groups
      mb = {name: x[rows] for name, x in base.items()}
      if global_normalisers:  # the full batch's counts
        tokens, seqs = float(mask.sum()), float(batch)
      else:  # what a naive loop would do: this microbatch's counts, then average
        tokens, seqs = float(mb["mask"].sum()) * k, float(len(rows)) * k
      grads = microbatch_grad(head, mb, tokens, seqs)
      total = {a: total[a] + grads[a] for a in aggregations}
    return total

  full = accumulated(1)
  for k in (2, group_size):
    split = accumulated(k)
    for a in aggregations:
      assert float(jnp.max(jnp.abs(full[a]))) > 1e-3, a
      np.testing.assert_allclose(np.asarray(split[a]), np.asarray(full[a]), rtol=0, atol=1e-6,
                                 err_msg=f"{a}, {k} microbatches")
  # Local token counts differ between microbatches: naive averaging of token means is wrong.
  naive = accumulated(group_size, global_normalisers=False)["token_mean"]
  assert float(jnp.max(jnp.abs(naive - full["token_mean"]))) > 1e-4


def test_metrics_match_numpy():
  logp, old, ref, adv, mask = _batch(seed=2, spread=1.5)
  adv[1] = 0.0
  cfg = GRPOConfig(clip_eps_low=0.2, clip_eps_high=0.28, beta=0.04, dual_clip_c=3.0)
  rng = np.random.default_rng(8)
  entropy = rng.uniform(0, 3, size=logp.shape)
  truncated = np.array([True, False, False, True, False, True])  # last row is padding
  with jax.enable_x64(True):
    _, m = jax.jit(lambda *a: grpo_loss(*a, cfg, entropy=jnp.asarray(entropy),
                                        truncated=jnp.asarray(truncated)))(
        *(jnp.asarray(x) for x in (logp, old, ref, adv, mask)))
  ratio = np.exp(logp - old)[mask]
  a_tok = np.broadcast_to(adv[:, None], logp.shape)[mask]
  kl = np.exp(ref - logp)[mask] - (ref - logp)[mask] - 1
  valid = mask.any(1)
  expected = {
      "clip_frac_low": np.mean((ratio < 0.8) & (a_tok < 0)),
      "clip_frac_high": np.mean((ratio > 1.28) & (a_tok > 0)),
      "dual_clip_frac": np.mean((a_tok < 0) & (-np.minimum(ratio * a_tok, np.clip(ratio, .8, 1.28)
                                                           * a_tok) > -3 * a_tok)),
      "ratio_mean": ratio.mean(), "ratio_max": ratio.max(), "ratio_min": ratio.min(),
      "kl_mean": np.minimum(kl, 10).mean(), "kl_max": np.minimum(kl, 10).max(),
      "entropy_mean": entropy[mask].mean(),
      "advantage_mean": adv[valid].mean(), "advantage_std": adv[valid].std(),
      "advantage_min": adv[valid].min(), "advantage_max": adv[valid].max(),
      "frac_zero_advantage": 1 / valid.sum(), "frac_truncated": truncated[valid].mean(),
      "completion_length_mean": mask.sum(1)[valid].mean(), "num_tokens": mask.sum(),
      "num_sequences": valid.sum(),
      "policy_loss": _np_grpo(logp, old, ref, adv, mask, dataclasses.replace(cfg, beta=0.0))[0],
      "loss": _np_grpo(logp, old, ref, adv, mask, cfg)[0],
  }
  assert expected["clip_frac_low"] > 0 and expected["clip_frac_high"] > 0
  assert expected["dual_clip_frac"] > 0
  for name, value in expected.items():
    assert float(m[name]) == pytest.approx(float(value), abs=1e-9), name


def test_bad_inputs_raise_naming_the_argument():
  logp, old, ref, adv, mask = (jnp.asarray(x) for x in _batch())
  cfg = GRPOConfig()
  with pytest.raises(ValueError, match="ref_logprobs is None but GRPOConfig.beta"):
    grpo_loss(logp, old, None, adv, mask, cfg)
  with pytest.raises(ValueError, match="old_logprobs must have the shape"):
    grpo_loss(logp, old[:, :3], ref, adv, mask, cfg)
  with pytest.raises(ValueError, match=r"advantages must be \[B\]"):
    grpo_loss(logp, old, ref, adv[:2], mask, cfg)
  with pytest.raises(ValueError, match="completion_mask must have the shape"):
    grpo_loss(logp, old, ref, adv, mask[:2], cfg)
  with pytest.raises(TypeError, match="cfg must be a GRPOConfig"):
    grpo_loss(logp, old, ref, adv, mask, {"beta": 0.0})


# ----------------------------------------------------------------------------- config
def test_r1_recipe_is_the_papers():
  cfg = r1_recipe()
  assert cfg == GRPOConfig()  # the dataclass defaults are the R1 recipe
  assert (cfg.num_generations, cfg.prompts_per_step, cfg.beta, cfg.clip_eps_low,
          cfg.clip_eps_high, LEARNING_RATES["r1"], cfg.rollout_temperature, cfg.num_minibatches,
          cfg.num_epochs, cfg.ref_update_interval) == (16, 32, 0.001, 10.0, 10.0, 3e-6, 1.0, 16,
                                                       1, 400)
  assert cfg.kl_estimator == "k3" and cfg.kl_mode == "loss"
  assert cfg.loss_aggregation == "seq_mean" and cfg.dual_clip_c is None
  assert cfg.outputs_per_rollout == 8192
  assert get_recipe("r1_stage4").rollout_temperature == 0.7
  for name in RECIPES:
    assert isinstance(get_recipe(name), GRPOConfig)
  assert set(LEARNING_RATES) == set(RECIPES) and LEARNING_RATES["dapo"] == 1e-6
  assert get_recipe("dapo", beta=0.5).beta == 0.5


@pytest.mark.parametrize("field,value", [
    ("beta", -0.1), ("num_generations", 0), ("kl_estimator", "k9"), ("kl_mode", "both"),
    ("loss_aggregation", "sum"), ("dual_clip_c", 0.5), ("clip_eps_low", -1.0),
    ("advantage_std_ddof", 2), ("max_len_norm", 0), ("ref_update_interval", -1),
    ("rollout_temperature", 0.0), ("logprob_chunk_size", 1.5),
])
def test_config_validation_names_the_field(field, value):
  with pytest.raises(ValueError, match=rf"GRPOConfig\.{field} "):
    GRPOConfig(**{field: value})
  with pytest.raises(ValueError, match=rf"GRPOConfig\.{field} "):
    r1_recipe().replace(**{field: value})


def test_config_unknown_names_raise():
  with pytest.raises(ValueError, match="no field"):
    r1_recipe().replace(betta=0.1)
  with pytest.raises(ValueError, match="unknown GRPO recipe"):
    get_recipe("r2")
