"""Rule rewards graded one slice per process, gathered: the same total, components and metrics as
one process grading everything. Two "processes" are two threads here, their gathers a barrier
(the real 2-process run is tests/train/test_multihost.py: its GRPO parameters equal one process's)."""
import threading

import numpy as np
import pytest

from r1jax.rewards.combine import CombinedReward
from r1jax.train.sharded_reward import ShardedReward, _merge_slices, slice_bounds


class _Collective:
  """All-gathers between `count` threads: each call returns every thread's input in order."""

  def __init__(self, count):
    self.count, self.barrier, self.slots = count, threading.Barrier(count), {}

  def gather(self, index, value, tiled):
    self.barrier.wait()
    self.slots[index] = value
    self.barrier.wait()
    out = [self.slots[i] for i in range(self.count)]
    self.barrier.wait()
    return np.concatenate(out) if tiled else out


def _run_sharded(combined, count, batch):
  c = _Collective(count)
  results, errors = [None] * count, [None] * count

  def one(i):
    fn = ShardedReward(combined, process=(i, count), gather_rows=lambda x: c.gather(i, x, True),
                       gather_objects=lambda o: c.gather(i, o, False))
    try:
      results[i] = fn(*batch)
    except Exception as e:  # noqa: BLE001
      errors[i] = e

  threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=60)
  return results, errors


def _batch(n=11):
  completions, answers, metadata = [], [], []
  for i in range(n):
    right = i % 3 != 0
    answer = str(i + 1 if right else i + 2)
    completions.append(f"<think>add {i} and 1</think><answer>{answer}</answer>" if i % 4 else f"just {answer}")
    answers.append(str(i + 1))
    metadata.append({"task": "math"})
  return completions, answers, metadata


@pytest.fixture(scope="module")
def combined():
  fn = CombinedReward({"accuracy": 1.0, "format": 0.5}, options={"accuracy": {"options": {"math": {"num_workers": 0, "soft_timeout_s": None}}}})
  yield fn
  fn.close()


@pytest.mark.parametrize("count", [2, 3])
def test_slices_gathered_equal_one_process(combined, count):
  batch = _batch()
  want = combined(*batch)
  results, errors = _run_sharded(combined, count, batch)
  assert errors == [None] * count
  for got in results:  # every process holds the same global rewards
    np.testing.assert_array_equal(got.total, want.total)
    for name in want.components:
      np.testing.assert_array_equal(got.components[name], want.components[name])
    for key, value in want.metrics.items():
      if key.endswith("seconds"):
        continue
      assert got.metrics[key] == pytest.approx(value), key
  assert results[0].metrics["accuracy/math/graded"] == want.metrics["accuracy/math/graded"] > 0


def test_a_failure_on_one_process_is_raised_on_every_process(combined, monkeypatch):
  original = combined.score_component
  first_row = _batch()[0][0]

  def flaky(name, completions, *rest):
    if name == "format" and completions and completions[0] == first_row:  # process 0's slice
      raise RuntimeError("sandbox refused")
    return original(name, completions, *rest)

  monkeypatch.setattr(combined, "score_component", flaky)
  results, errors = _run_sharded(combined, 2, _batch())
  assert all(isinstance(e, RuntimeError) and "process 0: RuntimeError: sandbox refused" in str(e) for e in errors)


def test_slice_bounds_cover_every_row_once():
  for n in range(0, 9):
    for count in (1, 2, 3, 4):
      rows = [r for p in range(count) for r in range(*slice_bounds(n, p, count))]
      assert rows == list(range(n))


def test_merge_slices_sums_counts_and_weights_means_by_rows():
  merged = _merge_slices([{"math/rows": 1.0, "math/mean": 1.0, "math/errors": 2.0, "seconds": 0.5},
                          {"math/rows": 3.0, "math/mean": 0.0, "math/errors": 1.0, "seconds": 0.2}],
                         [(0, 5), (5, 10)])
  assert merged == {"math/rows": 4.0, "math/mean": 0.25, "math/errors": 3.0, "seconds": 0.5}
