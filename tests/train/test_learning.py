"""GRPO must learn: a micro run whose initial policy's pass@k >> pass@1 raises training accuracy,
and the same run with rewards shuffled within each group (a control with the same reward
statistics and no signal) does not. It goes through the real pieces of a GRPO stage: the sampler
on the training weights, `score_rollout` (group advantages, batch layout), whole-group minibatches
and the jitted update (fused tempered log-probs, clipped surrogate, k3 KL, Adam).

Task: 8 fixed prompts; a completion is correct when its first token lies in the prompt's residue
class (token % 8 == prompt's class), 8 of 64 tokens, so the near-uniform initial policy has
pass@1 ~ 1/8 and pass@8 ~ 0.66.
"""
import jax
import numpy as np
import optax
import pytest
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.rl.config import GRPOConfig
from r1jax.sampling import BucketPolicy, Sampler, SamplingParams
from r1jax.train.grpo import make_ref_logprobs_fn, make_update_step, minibatch_slices, score_rollout
from r1jax.train.rollout import Rollout
from r1jax.train.state import init_train_state, merge, split_model
from tests.sampling.conftest import random_model

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64)
BUCKETS = BucketPolicy(min_batch=64, min_prompt_len=8, min_new_tokens=4, min_refill_rows=8)
PROMPTS = [[1 + p, 20 + 3 * p, 40 + p] for p in range(8)]
CLASSES = list(range(8))
G = 8
ROLLOUTS = 20
LEARNING_RATE = 1e-2


def _correct(prompt_index, completions):
  return np.asarray([len(c) > 0 and c[0] % 8 == CLASSES[g] for g, c in zip(prompt_index, completions)], np.float32)


def _run(shuffle: bool) -> list[float]:
  model = random_model(CFG, seed=0, std=0.2)
  graphdef, params, extra = split_model(model)
  sampler, _ = Sampler.from_model(model, buckets=BUCKETS)
  cfg = GRPOConfig(num_generations=G, prompts_per_step=8, num_minibatches=1, beta=0.001, clip_eps_low=0.2,
                   clip_eps_high=0.2, max_completion_length=2, logprob_chunk_size=64,
                   rollout_temperature=1.0)
  tx = optax.adam(LEARNING_RATE)
  state = init_train_state(params, extra, tx)
  ref = jax.tree.map(lambda x: x, params)
  update = jax.jit(make_update_step(graphdef, tx, cfg, use_ref=True))
  ref_lp = jax.jit(make_ref_logprobs_fn(graphdef, cfg.logprob_chunk_size))
  shuffler = np.random.default_rng(1)
  accuracy = []
  for r in range(ROLLOUTS):
    policy = jax.tree.map(lambda x: x, merge(graphdef, state.params, state.extra))
    gen = sampler.generate(nnx.state(policy), PROMPTS, SamplingParams(temperature=1.0, max_new_tokens=2, n=G,
                                                                      seed=100 + r))
    correct = _correct(gen.prompt_index, gen.completions())
    accuracy.append(float(correct.mean()))
    rewards = correct.copy()
    if shuffle:  # same rewards, same groups, no relation to the outputs
      for g in range(len(PROMPTS)):
        rows = np.flatnonzero(gen.prompt_index == g)
        rewards[rows] = rewards[shuffler.permutation(rows)]
    roll = Rollout(prompts=PROMPTS, answers=[None] * 8, metadata=[{}] * 8, gen=gen, texts=[""] * len(rewards),
                   rewards=rewards, components={"accuracy": correct}, reward_metrics={})
    scored = score_rollout(roll, cfg, ref_logprobs_fn=lambda b: ref_lp(ref, state.extra, b), length_multiple=8)
    for idx in minibatch_slices(len(PROMPTS), G, 1, None):
      state, m = update(state, {k: np.asarray(v)[idx] for k, v in scored.batch.items()})
      assert float(m["skipped_nonfinite"]) == 0.0
  return accuracy


@pytest.mark.slow
def test_grpo_learns_and_a_reward_shuffled_control_does_not():
  learned, control = _run(shuffle=False), _run(shuffle=True)
  assert learned[0] == control[0]  # same policy, same seed: the first rollout is the same
  start = learned[0]
  assert 0.05 < start < 0.3, learned  # pass@1 ~ 1/8, so pass@8 >> pass@1
  print("learned", np.round(learned, 2), "control", np.round(control, 2))
  assert np.mean(learned[-5:]) - start > 0.4, (learned, control)
  assert np.mean(control[-5:]) - start < 0.15, (learned, control)
