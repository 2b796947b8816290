"""End-to-end generate on a tiny GQA model: greedy vs full recompute, log-probs vs a teacher-forced
forward, stop handling, lengths, compile counts, determinism, groups and input errors."""
import jax
import numpy as np
import pytest
from flax import nnx

from r1jax.sampling import Sampler, SamplingParams, generate
from r1jax.sampling import programs
from tests.sampling.conftest import TEST_BUCKETS, teacher_forced
from tests.sampling.test_processors import ref_truncated_probs

PROMPTS = [[5], [1, 2, 3, 4, 5], list(range(10, 22)), list(range(30, 47))]  # lengths 1, 5, 12, 17
# One sampled configuration for every sampled test (each static configuration is one more compile).
SAMPLED = dict(temperature=0.8, top_k=20, top_p=0.9, return_sampling_logprobs=True)


@pytest.fixture(scope="module")
def sampler(gqa_model):
  return Sampler.from_model(gqa_model, buckets=TEST_BUCKETS)


def test_greedy_equals_full_recompute_and_logprobs_equal_teacher_forced(gqa_model, sampler):
  s, params = sampler
  res = s.generate(params, PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=12))
  assert res.tokens.shape == (4, 12)
  np.testing.assert_array_equal(res.lengths, 12)
  assert res.finish_reasons == ["length"] * 4
  for prompt, toks, lps in zip(PROMPTS, res.tokens, res.logprobs):
    ref_lp, ref_argmax, _ = teacher_forced(gqa_model, prompt, toks)
    np.testing.assert_array_equal(toks, ref_argmax)
    np.testing.assert_allclose(lps, ref_lp, atol=1e-4)
  assert res.sampling_logprobs is None


def test_sampled_logprobs_policy_and_sampling_distribution(gqa_model, sampler):
  s, params = sampler
  sp = SamplingParams(**SAMPLED, max_new_tokens=10, seed=3)
  res = s.generate(params, PROMPTS[:3], sp)
  for prompt, toks, lps, slps in zip(PROMPTS, res.tokens, res.logprobs, res.sampling_logprobs):
    # policy log-probs: the tempered (T = 0.8), untruncated softmax the GRPO trainer uses
    ref_lp, _, logits = teacher_forced(gqa_model, prompt, toks, temperature=0.8)
    np.testing.assert_allclose(lps, ref_lp, atol=1e-4)
    for t, tok in enumerate(toks):
      probs = ref_truncated_probs(logits[t], 0.8, 20, 0.9)
      assert probs[tok] > 0, "sampled outside the top-k/top-p support"
      np.testing.assert_allclose(slps[t], np.log(probs[tok]), atol=1e-4)


def test_stop_token_is_kept_and_ends_the_row(sampler):
  s, params = sampler
  base = s.generate(params, PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=12))
  stop = int(base.tokens[1, 4])  # a token that row 1 emits at index 4 (maybe earlier too)
  res = s.generate(params, PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=12, stop_token_ids=[stop, 127]))
  for i in range(len(PROMPTS)):
    row = base.tokens[i]
    hits = np.flatnonzero((row == stop) | (row == 127))
    n = hits[0] + 1 if hits.size else 12
    assert res.lengths[i] == n
    np.testing.assert_array_equal(res.tokens[i, :n], row[:n])  # stop token included
    np.testing.assert_array_equal(res.tokens[i, n:], 0)
    np.testing.assert_array_equal(res.logprobs[i, n:], 0.0)
    np.testing.assert_allclose(res.logprobs[i, :n], base.logprobs[i, :n], atol=1e-6)
    assert res.finish_reasons[i] == ("stop" if hits.size else "length")
  assert res.lengths[1] <= 5 and res.finish_reasons[1] == "stop"
  np.testing.assert_array_equal(res.completion_mask.sum(1), res.lengths)
  assert [len(c) for c in res.completions()] == res.lengths.tolist()


def test_max_new_tokens_respected_per_prompt(sampler):
  s, params = sampler
  res = s.generate(params, PROMPTS, SamplingParams(**SAMPLED, max_new_tokens=9),
                   max_new_tokens_per_prompt=[1, 9, 4, 6])
  np.testing.assert_array_equal(res.lengths, [1, 9, 4, 6])
  assert res.tokens.shape == (4, 9) and res.finish_reasons == ["length"] * 4
  assert np.all(res.tokens[~res.completion_mask] == 0)


def test_same_bucket_shapes_do_not_recompile(sampler):
  s, params = sampler
  sp = SamplingParams(temperature=0.0, max_new_tokens=12)
  s.generate(params, PROMPTS, sp)  # warm: 8 slots, prompt bucket 32, 16 new-token columns
  before = dict(programs.TRACES)
  again = [
      (PROMPTS[::-1], sp),  # same bucket, other lengths order
      ([[3, 4, 5] * 6, [9] * 20, [1]], SamplingParams(temperature=0.0, max_new_tokens=16, stop_token_ids=[7])),
      (PROMPTS[:3] + [[8] * 25], SamplingParams(temperature=0.0, max_new_tokens=13, seed=4)),
  ]
  for prompts, spx in again:
    res = s.generate(params, prompts, spx)
    assert res.stats["compiles"] == {}, res.stats
  assert dict(programs.TRACES) == before
  # a new bucket compiles, once
  s.generate(params, [[1] * 40], sp)
  assert programs.TRACES["decode"] == before["decode"] + 1
  s.generate(params, [[2] * 50], sp)
  assert programs.TRACES["decode"] == before["decode"] + 1


def test_same_seed_same_output_and_independent_of_batch_and_padding(sampler):
  s, params = sampler
  sp = SamplingParams(**SAMPLED, max_new_tokens=10, seed=11)
  a = s.generate(params, PROMPTS[:2], sp)
  b = s.generate(params, PROMPTS[:2], sp)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  # other rows in the batch (with longer prompts, so rows 0, 1 get more padding): unchanged
  c = s.generate(params, PROMPTS[:2] + [list(range(30))] * 3, sp)
  np.testing.assert_array_equal(c.tokens[:2], a.tokens)
  np.testing.assert_allclose(c.logprobs[:2], a.logprobs, atol=1e-5)
  d = s.generate(params, PROMPTS[:2], SamplingParams(**SAMPLED, max_new_tokens=10, seed=12))
  assert not np.array_equal(d.tokens, a.tokens)


def test_groups_of_n(sampler):
  s, params = sampler
  res = s.generate(params, PROMPTS[:2], SamplingParams(**SAMPLED, max_new_tokens=8, n=3))
  np.testing.assert_array_equal(res.prompt_index, [0, 0, 0, 1, 1, 1])
  assert len({tuple(r) for r in res.tokens[:3]}) == 3  # one stream per row
  greedy = s.generate(params, PROMPTS[:2], SamplingParams(temperature=0.0, max_new_tokens=8, n=2))
  np.testing.assert_array_equal(greedy.tokens[0], greedy.tokens[1])
  np.testing.assert_array_equal(greedy.tokens[2], greedy.tokens[3])


def test_module_generate_uses_the_model(gqa_model, sampler):
  s, params = sampler
  sp = SamplingParams(temperature=0.0, max_new_tokens=12)
  one_off = generate(gqa_model, PROMPTS, sp, buckets=TEST_BUCKETS)
  np.testing.assert_array_equal(one_off.tokens, s.generate(params, PROMPTS, sp).tokens)
  assert s.stats.calls >= 1 and s.stats.new_tokens > 0 and s.stats.tokens_per_s > 0


@pytest.mark.parametrize("prompts,kw,match", [
    ([[1, 2], []], {}, r"prompts\[1\] must be a non-empty"),
    ([[1, 128]], {}, r"prompts\[0\]\[1\] = 128 is outside the vocabulary"),
    ([[1.5]], {}, r"prompts\[0\] must hold integer"),
    ([], {}, "prompts is empty"),
    ([[1]], dict(max_new_tokens_per_prompt=[99]), r"max_new_tokens_per_prompt\[0\] = 99"),
    ([[1]], dict(max_new_tokens_per_prompt=[1, 2]), "has 2 entries for 1 prompts"),
    ([[1]], dict(num_slots=0), "num_slots must be >= 1"),
])
def test_bad_inputs_raise_clear_errors(sampler, prompts, kw, match):
  s, params = sampler
  with pytest.raises(ValueError, match=match):
    s.generate(params, prompts, SamplingParams(max_new_tokens=8), **kw)


def test_new_parameter_arrays_are_used_without_recompiling(sampler):
  """Parameters are arguments: after an 'optimizer step' (new arrays), generate sees them."""
  s, params = sampler
  sp = SamplingParams(temperature=0.0, max_new_tokens=12)
  before = s.generate(params, PROMPTS, sp)
  stepped = jax.tree.map(lambda x: x, params)  # a new State; only the head gets a new array
  stepped["lm_head"].set_value(-params["lm_head"][...])
  after = s.generate(stepped, PROMPTS, sp)
  assert after.stats["compiles"] == {}
  assert not np.array_equal(after.tokens, before.tokens)
  stepped_model = nnx.merge(s.graphdef, stepped)
  for prompt, toks in zip(PROMPTS, after.tokens):
    np.testing.assert_array_equal(toks, teacher_forced(stepped_model, prompt, toks)[1])
  np.testing.assert_array_equal(s.generate(params, PROMPTS, sp).tokens, before.tokens)  # old arrays intact
