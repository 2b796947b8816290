"""Slot refill: same outputs as static batching (greedy and sampled), fewer decode steps on a
long-tail batch, and the host scheduler's bookkeeping against a fake runner."""
import numpy as np
import pytest

from r1jax.sampling import Sampler, SamplingParams
from r1jax.sampling.refill import run_schedule
from r1jax.sampling.runner import Request, RowOutput
from tests.sampling.conftest import TEST_BUCKETS, teacher_forced
from tests.sampling.test_generate import SAMPLED

RNG = np.random.default_rng(7)
PROMPTS = [RNG.integers(0, 128, size=n).tolist() for n in RNG.integers(1, 30, size=14)]
LIMITS = [16 if i % 5 == 0 else int(RNG.integers(1, 5)) for i in range(14)]  # a long tail


@pytest.fixture(scope="module")
def sampler(gqa_model):
  return Sampler.from_model(gqa_model, buckets=TEST_BUCKETS)


@pytest.mark.parametrize("sampled", [False, True])
def test_refill_equals_static_batching(gqa_model, sampler, sampled):
  s, params = sampler
  sp = SamplingParams(**(SAMPLED if sampled else dict(temperature=0.0)), max_new_tokens=16, seed=5)
  kw = dict(num_slots=8, max_new_tokens_per_prompt=LIMITS)
  static = s.generate(params, PROMPTS, sp, refill=False, **kw)
  refill = s.generate(params, PROMPTS, sp, refill=True, min_refill_rows=2, **kw)
  np.testing.assert_array_equal(refill.lengths, LIMITS)
  np.testing.assert_array_equal(refill.tokens, static.tokens)
  np.testing.assert_allclose(refill.logprobs, static.logprobs, atol=1e-5)
  assert refill.stats["prefills"] > 2 and refill.stats["decode_steps"] < static.stats["decode_steps"]
  for prompt, toks, lps, n in zip(PROMPTS, refill.tokens, refill.logprobs, refill.lengths):
    # refilled rows see no stale K/V; log-probs are of the sampling temperature's softmax
    ref_lp, ref_argmax, _ = teacher_forced(gqa_model, prompt, toks[:n], temperature=sp.temperature if sampled else 1.0)
    np.testing.assert_allclose(lps[:n], ref_lp, atol=1e-4)
    if not sampled:
      np.testing.assert_array_equal(toks[:n], ref_argmax)


def test_refill_with_stop_tokens(sampler):
  s, params = sampler
  base = s.generate(params, PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=16), num_slots=8)
  stop = int(np.bincount(base.tokens[:, :8].ravel()).argmax())  # a frequent early token
  sp = SamplingParams(temperature=0.0, max_new_tokens=16, stop_token_ids=[stop])
  res = s.generate(params, PROMPTS, sp, num_slots=8, refill=True, min_refill_rows=1)
  for row, toks, n, why in zip(base.tokens, res.tokens, res.lengths, res.finish_reasons):
    hits = np.flatnonzero(row == stop)
    assert n == (hits[0] + 1 if hits.size else 16) and why == ("stop" if hits.size else "length")
    np.testing.assert_array_equal(toks[:n], row[:n])
  assert "stop" in res.finish_reasons


class FakeRunner:
  """Each row finishes after `limit` decode steps; decode stops at the scheduler's threshold."""

  def __init__(self, slots):
    self.slots = slots
    self.req = [None] * slots
    self.left = np.zeros(slots, int)
    self.prefill_sizes, self.steps = [], 0

  def prefill(self, slots, requests):
    assert len(slots) == len(requests) and all(self.req[s] is None or self.left[s] == 0 for s in slots)
    self.prefill_sizes.append(len(slots))
    for s, r in zip(slots, requests):
      self.req[s], self.left[s] = r, r.limit - 1  # the first token comes from the prefill

  def _done(self):
    return np.array([r is None or l == 0 for r, l in zip(self.req, self.left)])

  def decode(self, threshold):
    while (~self._done()).any() and self._done().sum() < threshold:
      self.left = np.maximum(self.left - 1, 0)
      self.steps += 1

  def status(self):
    n = np.array([0 if r is None else r.limit - l for r, l in zip(self.req, self.left)])
    return self._done(), n, np.zeros(self.slots, bool)

  def read_rows(self, slots, n, stopped):
    out = []
    for s in slots:
      out.append(RowOutput(np.full(n[s], self.req[s].row_id), np.zeros(n[s]), np.zeros(n[s]), False))
    return out


@pytest.mark.parametrize("refill,min_rows", [(False, 1), (True, 1), (True, 3)])
def test_scheduler_runs_every_request_once(refill, min_rows):
  limits = [1, 9, 2, 2, 3, 8, 1, 1, 4, 2, 7]
  reqs = [Request(np.array([1]), i, lim) for i, lim in enumerate(limits)]
  runner = FakeRunner(4)
  out, stats = run_schedule(runner, reqs, refill=refill, min_refill_rows=min_rows)
  assert sorted(out) == list(range(len(limits)))
  for i, lim in enumerate(limits):
    assert len(out[i].tokens) == lim and np.all(out[i].tokens == i)
  assert sum(runner.prefill_sizes) == len(limits) and stats.prefills == len(runner.prefill_sizes)
  if not refill:
    assert runner.prefill_sizes == [4, 4, 3]
    assert runner.steps == (9 - 1) + (8 - 1) + (7 - 1)  # each batch waits for its longest row
  else:
    assert runner.steps < (9 - 1) + (8 - 1) + (7 - 1)


def test_scheduler_rejects_bad_min_refill():
  with pytest.raises(ValueError, match="min_refill_rows"):
    run_schedule(FakeRunner(2), [], refill=True, min_refill_rows=0)
