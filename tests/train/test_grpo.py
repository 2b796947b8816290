"""GRPO rollout -> batch layout, sampler/trainer log-prob agreement, group minibatches, and one
update moving the policy in the direction of the advantages."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.rl.config import GRPOConfig
from r1jax.sampling import BucketPolicy, Sampler, SamplingParams
from r1jax.train.grpo import (build_rollout_batch, make_ref_logprobs_fn, make_update_step, minibatch_slices,
                              policy_logprobs)
from r1jax.train.state import init_train_state, split_model
from tests.sampling.conftest import random_model

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, qkv_bias=True)
BUCKETS = BucketPolicy(min_batch=8, min_prompt_len=16, min_new_tokens=16, min_refill_rows=8)


def test_batch_layout_covers_completion_and_stop_token():
  prompts = [[5, 6, 7], [8, 9]]
  completions = [[10, 11, 2], [12]]  # 2 = stop token, kept
  lps = np.array([[-0.1, -0.2, -0.3], [-0.4, 0, 0]], np.float32)
  b = build_rollout_batch(prompts, completions, lps, np.array([False, True]), length_multiple=8)
  assert b["tokens"].shape == (2, 8)
  np.testing.assert_array_equal(b["tokens"][0, :6], [5, 6, 7, 10, 11, 2])
  np.testing.assert_array_equal(b["targets"][0, :5], [6, 7, 10, 11, 2])
  # position t predicts targets[t]: the completion's tokens (stop included) are targets 2..4
  np.testing.assert_array_equal(b["completion_mask"][0], [0, 0, 1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(b["completion_mask"][1], [0, 1, 0, 0, 0, 0, 0, 0])
  np.testing.assert_allclose(b["old_logprobs"][0, 2:5], [-0.1, -0.2, -0.3])
  assert b["targets"][0, 2:5].tolist() == completions[0]
  np.testing.assert_array_equal(b["segment_ids"][1], [1, 1, 1, 0, 0, 0, 0, 0])
  assert b["truncated"].tolist() == [False, True]


def test_minibatches_hold_whole_groups():
  slices = minibatch_slices(6, 4, 3, np.random.default_rng(0))
  rows = np.concatenate(slices)
  assert sorted(rows.tolist()) == list(range(24))
  for s in slices:
    assert len(s) == 8 and len({r // 4 for r in s}) == 2 and all(np.sum(s // 4 == g) == 4 for g in set(s // 4))


def test_sampler_logprobs_are_the_trainer_logprobs_and_update_follows_advantages():
  model = random_model(CFG, seed=1, std=0.1)
  sampler, state_full = Sampler.from_model(model, buckets=BUCKETS)
  prompts = [[3, 4, 5, 6], [7, 8], [9, 10, 11]]
  G = 4
  gen = sampler.generate(state_full, prompts, SamplingParams(temperature=1.0, max_new_tokens=10, n=G, seed=3,
                                                             stop_token_ids=(1,)))
  rows = [prompts[i] for i in gen.prompt_index]
  b = build_rollout_batch(rows, gen.completions(), gen.logprobs, np.array([r == "length" for r in gen.finish_reasons]),
                          length_multiple=16)
  graphdef, params, extra = split_model(model)
  jb = {k: jnp.asarray(v) for k, v in b.items()}
  lp, _ = jax.jit(lambda p, e, bb: policy_logprobs(graphdef, p, e, bb, chunk_size=16))(params, extra, jb)
  mask = b["completion_mask"] > 0
  diff = np.abs(np.asarray(lp) - b["old_logprobs"])[mask]
  assert mask.sum() > 10 and diff.max() < 1e-4, diff.max()

  # One update with advantage +1 for the first row of each group and -1 for the second.
  adv = np.zeros(len(rows), np.float32)
  adv[0::G], adv[1::G] = 1.0, -1.0
  b["advantages"] = adv
  b["ref_logprobs"] = b["old_logprobs"]
  cfg = GRPOConfig(num_generations=G, prompts_per_step=3, num_minibatches=1, beta=0.0, clip_eps_low=0.2,
                   clip_eps_high=0.2, logprob_chunk_size=16)
  tx = optax.sgd(0.5)
  st = init_train_state(params, extra, tx)
  step = jax.jit(make_update_step(graphdef, tx, cfg, use_ref=False))
  st2, metrics = step(st, {k: jnp.asarray(v) for k, v in b.items()})
  assert abs(float(metrics["ratio_mean"]) - 1.0) < 1e-5  # on-policy: old log-probs are current
  lp2, _ = jax.jit(lambda p, e, bb: policy_logprobs(graphdef, p, e, bb, chunk_size=16))(st2.params, extra, jb)
  seq = lambda x: (np.asarray(x) * mask).sum(-1)
  gain = seq(lp2) - seq(lp)
  assert np.all(gain[0::G] > 0) and np.all(gain[1::G] < 0), gain


def test_tempered_rollout_gives_ratio_one_and_zero_kl_on_the_first_minibatch():
  """Rollouts at T = 0.7 (the paper's stage 4): the sampler's old log-probs, the reference log-probs
  and the trained log-probs are all of softmax(logits / 0.7), so the first update is on-policy."""
  T = 0.7
  model = random_model(CFG, seed=2, std=0.1)
  sampler, state_full = Sampler.from_model(model, buckets=BUCKETS)
  prompts = [[3, 4, 5, 6], [7, 8]]
  G = 4
  gen = sampler.generate(state_full, prompts, SamplingParams(temperature=T, top_p=0.95, max_new_tokens=10, n=G,
                                                             seed=5, stop_token_ids=(1,)))
  rows = [prompts[i] for i in gen.prompt_index]
  b = build_rollout_batch(rows, gen.completions(), gen.logprobs, np.array([r == "length" for r in gen.finish_reasons]),
                          length_multiple=16)
  graphdef, params, extra = split_model(model)
  jb = {k: jnp.asarray(v) for k, v in b.items()}
  b["ref_logprobs"] = np.asarray(jax.jit(make_ref_logprobs_fn(graphdef, 16, T))(params, extra, jb))
  mask = b["completion_mask"] > 0
  np.testing.assert_allclose(b["ref_logprobs"][mask], b["old_logprobs"][mask], atol=1e-4)
  untempered, _ = jax.jit(lambda p, e, bb: policy_logprobs(graphdef, p, e, bb, chunk_size=16))(params, extra, jb)
  assert np.abs(np.asarray(untempered) - b["old_logprobs"])[mask].max() > 1e-2  # T = 1 would be off-policy
  b["advantages"] = np.where(np.arange(len(rows)) % 2 == 0, 1.0, -1.0).astype(np.float32)
  cfg = GRPOConfig(num_generations=G, prompts_per_step=2, num_minibatches=1, beta=0.04, clip_eps_low=0.2,
                   clip_eps_high=0.2, logprob_chunk_size=16, rollout_temperature=T)
  tx = optax.sgd(0.1)
  step = jax.jit(make_update_step(graphdef, tx, cfg, use_ref=True))
  _, m = step(init_train_state(params, extra, tx), {k: jnp.asarray(v) for k, v in b.items()})
  assert abs(float(m["ratio_min"]) - 1.0) < 1e-4 and abs(float(m["ratio_max"]) - 1.0) < 1e-4, m
  assert abs(float(m["kl_mean"])) < 1e-6 and float(m["clip_frac_low"]) == float(m["clip_frac_high"]) == 0.0
