"""Dynamic sampling against a direct construction, the NaN guard, and the rollout metrics."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from r1jax.rl.config import GRPOConfig
from r1jax.sampling.sampler import GenerationResult
from r1jax.train.grpo import build_rollout_batch, make_update_step
from r1jax.train.metrics import MetricsWriter
from r1jax.train.grpo_metrics import NonFiniteGuard, aggregate_update_metrics
from r1jax.train.rollout import Rollout, fill_rollout, informative_groups, take_groups
from r1jax.train.state import init_train_state, split_model
from tests.sampling.conftest import random_model
from tests.train.test_grpo import CFG

G = 3


def _draw(d: int, rewards_per_group):
  """Draw d: P groups of G rows; group p's rows carry tokens (d, p, j) so any row can be traced."""
  P = len(rewards_per_group)
  toks = np.array([[d, p, j] for p in range(P) for j in range(G)], np.int32)
  gen = GenerationResult(tokens=toks, lengths=np.full(P * G, 3, np.int32), finish_reasons=["stop"] * (P * G),
                         logprobs=toks.astype(np.float32) / -10.0, sampling_logprobs=None,
                         prompt_index=np.repeat(np.arange(P), G).astype(np.int32), stats={})
  rewards = np.asarray([r for p in rewards_per_group for r in p], np.float32)
  return Rollout(prompts=[[d, p] for p in range(P)], answers=[f"a{d}{p}" for p in range(P)],
                 metadata=[{"id": f"{d}/{p}"} for p in range(P)], gen=gen, texts=[f"t{d}{p}{j}" for p in range(P)
                                                                                  for j in range(G)],
                 rewards=rewards, components={"accuracy": rewards.copy()},
                 reward_metrics={"accuracy/mean": float(rewards.mean()), "accuracy/failed": 1.0})


DRAWS = [
    [[0, 0, 0], [1, 0, 1], [1, 1, 1], [0, 1, 0]],  # informative: groups 1, 3
    [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],  # none
    [[1, 0, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1]],  # informative: groups 0, 1, 2 (only 2 needed)
]


def _sequence(draws):
  it = iter(range(len(draws)))

  def draw():
    d = next(it)
    return _draw(d, draws[d])
  return draw


def test_dynamic_sampling_equals_the_direct_construction():
  roll, stats = fill_rollout(_sequence(DRAWS), 4, dynamic=True, max_draws=5)
  # Direct: the informative groups in draw order, (draw, group) = (0,1) (0,3) (2,0) (2,1).
  want = [(0, 1), (0, 3), (2, 0), (2, 1)]
  assert roll.prompts == [[d, p] for d, p in want]
  assert roll.answers == [f"a{d}{p}" for d, p in want]
  assert [m["id"] for m in roll.metadata] == [f"{d}/{p}" for d, p in want]
  np.testing.assert_array_equal(roll.gen.tokens, [[d, p, j] for d, p in want for j in range(G)])
  np.testing.assert_array_equal(roll.gen.prompt_index, np.repeat(np.arange(4), G))
  np.testing.assert_array_equal(roll.rewards, [r for d, p in want for r in DRAWS[d][p]])
  np.testing.assert_array_equal(roll.components["accuracy"], roll.rewards)
  assert roll.texts == [f"t{d}{p}{j}" for d, p in want for j in range(G)]
  np.testing.assert_allclose(roll.gen.logprobs, roll.gen.tokens / -10.0)
  assert informative_groups(roll.rewards, roll.gen.prompt_index, 4).all()
  assert stats == {"dynamic/draws": 3.0, "dynamic/prompts_drawn": 12.0, "dynamic/informative_fraction": 5 / 12,
                   "dynamic/filled_uninformative": 0.0}
  # Reward metrics describe every sampled row: means averaged over draws, counts summed.
  assert roll.reward_metrics["accuracy/failed"] == 3.0
  assert roll.reward_metrics["accuracy/mean"] == pytest.approx(np.mean([np.mean(d) for d in DRAWS]))


def test_dynamic_sampling_bounded_tries_top_up_with_uninformative_groups():
  roll, stats = fill_rollout(_sequence(DRAWS[:2]), 4, dynamic=True, max_draws=2)
  # 2 informative groups from draw 0, then the first uninformative ones (draw 0: groups 0, 2).
  assert roll.prompts == [[0, 1], [0, 3], [0, 0], [0, 2]]
  assert stats["dynamic/draws"] == 2 and stats["dynamic/filled_uninformative"] == 2.0
  off, _ = fill_rollout(_sequence(DRAWS), 4, dynamic=False)
  assert off.prompts == [[0, p] for p in range(4)]  # one draw, every group kept


def test_take_groups_reorders_and_renumbers():
  r = _draw(0, DRAWS[0])
  sub = take_groups(r, [2, 0])
  assert sub.prompts == [[0, 2], [0, 0]]
  np.testing.assert_array_equal(sub.gen.prompt_index, [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(sub.gen.tokens[:, 1], [2, 2, 2, 0, 0, 0])


def test_nan_minibatch_skips_the_update_and_keeps_the_state():
  model = random_model(CFG, seed=1, std=0.1)
  graphdef, params, extra = split_model(model)
  rows = [[3, 4, 5], [6, 7], [8, 9, 10], [11, 12]]
  comps = [[13, 14, 1], [15, 1], [16], [17, 18]]
  b = build_rollout_batch(rows, comps, np.full((4, 3), -1.0, np.float32), np.zeros(4, bool), length_multiple=8)
  b["advantages"] = np.array([1.0, -1.0, 0.5, -0.5], np.float32)
  b["ref_logprobs"] = b["old_logprobs"]
  cfg = GRPOConfig(num_generations=2, prompts_per_step=2, num_minibatches=1, beta=0.0, logprob_chunk_size=16)
  tx = optax.adam(1e-2)
  step = jax.jit(make_update_step(graphdef, tx, cfg, use_ref=False))
  st0 = init_train_state(params, extra, tx)
  good, m_good = step(st0, {k: jnp.asarray(v) for k, v in b.items()})
  assert float(m_good["skipped_nonfinite"]) == 0.0 and int(good.step) == 1
  assert any(np.abs(np.asarray(a) - np.asarray(c)).max() > 0 for a, c in zip(jax.tree.leaves(good.params),
                                                                               jax.tree.leaves(st0.params)))
  bad_b = dict(b, advantages=np.array([np.nan, -1.0, 0.5, -0.5], np.float32))
  bad, m_bad = step(good, {k: jnp.asarray(v) for k, v in bad_b.items()})
  assert float(m_bad["skipped_nonfinite"]) == 1.0 and not np.isfinite(float(m_bad["loss"]))
  assert int(bad.step) == 2  # the counter still counts minibatches
  for a, c in zip(jax.tree.leaves((bad.params, bad.opt_state)), jax.tree.leaves((good.params, good.opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_guard_saves_each_bad_minibatch_and_stops_after_n_in_a_row(tmp_path):
  guard = NonFiniteGuard(str(tmp_path / "nonfinite"), 3)
  mb = {"tokens": np.arange(6).reshape(2, 3)}
  guard.check(10, True, mb)
  guard.check(11, False, mb)  # a good update resets the streak
  guard.check(12, True, mb)
  guard.check(13, True, mb)
  assert guard.total == 3 and guard.streak == 2
  np.testing.assert_array_equal(np.load(tmp_path / "nonfinite" / "step_12.npz")["tokens"], mb["tokens"])
  with pytest.raises(FloatingPointError, match="stopped at step 14: 3 non-finite updates in a row"):
    guard.check(14, True, mb)


def test_rollout_metrics_keep_extremes_and_nonfinite_values(tmp_path):
  agg = aggregate_update_metrics([{"ratio_min": 0.9, "ratio_max": 1.2, "loss": 1.0, "skipped_nonfinite": 0.0},
                                  {"ratio_min": 0.7, "ratio_max": 1.1, "loss": np.nan, "skipped_nonfinite": 1.0}])
  assert agg["ratio_min"] == 0.7 and agg["ratio_max"] == 1.2 and agg["skipped_nonfinite"] == 1.0
  assert np.isnan(agg["loss"])
  w = MetricsWriter(str(tmp_path), tensorboard=True)
  row = w.write(3, {**agg, "inf": float("inf"), "label": "x", "absent": None})
  w.close()
  assert np.isnan(row["loss"]) and row["inf"] == float("inf") and "absent" not in row
  back = json.loads(open(tmp_path / "metrics.jsonl").read())
  assert np.isnan(back["loss"]) and back["inf"] == float("inf")
  with pytest.raises(TypeError, match="'vec'"):
    MetricsWriter(str(tmp_path / "b"), tensorboard=False).write(1, {"vec": [1.0, 2.0]})
