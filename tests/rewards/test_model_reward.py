"""Learned rewards: which text each reward model reads, batching and bucketing parity, bad input,
registry build, and the save / load round trip."""
import numpy as np
import pytest
from flax import nnx

from r1jax.data import encode
from r1jax.data.tasks import corpora
from r1jax.data.tokenizer import train_sentencepiece
from r1jax.models.config import ModelConfig
from r1jax.models.reward_head import RewardModel, make_score_fn, split_reward_model
from r1jax.rewards import registry
from r1jax.rewards import model as rm_reward  # registers helpfulness_rm / safety_rm

# Every scoring pass below is one [32, 80] program: full row buckets, length bucket capped at 80.
MAX_LEN = 80
BUCKETS = dict(max_len=MAX_LEN, batch_size=32, min_batch_bucket=32, min_len_bucket=128)

PROMPT = "What is the capital of France?"
SUMMARY = "The capital of France is Paris. <answer>Paris</answer>"
REASONING_A = "<think>\nFrance is in Europe; its capital is Paris.\n</think>\n\n"
REASONING_B = "<think>\nLet me recall. Wait, let me re-check: yes, it is Paris.\n</think>\n\n"


@pytest.fixture(scope="module")
def tok():
  lines = [f"{r['prompt']} {r['chosen']} {r['rejected']}" for r in corpora.preference_corpus(200)]
  lines += [f"{r['prompt']} {r['response']}" for r in corpora.safety_corpus(200)]
  lines += [PROMPT + REASONING_A + REASONING_B + SUMMARY]
  return train_sentencepiece(lines, vocab_size=1024)


@pytest.fixture(scope="module")
def rm(tok):
  cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                    head_dim=8, ffn_dim=64, max_position_embeddings=128)
  return RewardModel(cfg, rngs=nnx.Rngs(0))


def _direct_raw_score(rm, tok, prompt, text):
  """Reference: the model's score of prompt + text, tokenised as in training, one padded row."""
  ids = encode.encode_scored(prompt, text, tok, rm_reward.DEFAULT_TEMPLATE)
  assert len(ids) <= MAX_LEN
  tokens, lengths = encode.pad_rows([ids] + [[]] * 31, MAX_LEN, tok.pad_id)
  graphdef, params, extra = split_reward_model(rm)
  return float(np.asarray(make_score_fn(graphdef)(params, extra, tokens, lengths))[0])


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_text_selection():
  assert rm_reward.summary_text(REASONING_A + SUMMARY) == SUMMARY
  assert rm_reward.summary_text(SUMMARY + "  \n") == SUMMARY  # no think block: all summary
  assert rm_reward.summary_text("<think>a</think>x<think>b</think> y ") == "y"  # after the last
  assert rm_reward.summary_text("reasoning only\n</think>\nDone.") == "Done."  # <think> in prompt
  assert rm_reward.summary_text("<think>cut off mid-reasoning") is None
  assert rm_reward.summary_text(REASONING_A + "   ") is None
  assert rm_reward.summary_text(None) is None and rm_reward.summary_text(b"ok") == "ok"
  assert rm_reward.full_response_text(REASONING_A + SUMMARY) == REASONING_A + SUMMARY
  assert rm_reward.full_response_text("<think>cut off") == "<think>cut off"
  assert rm_reward.full_response_text(" \n ") is None and rm_reward.full_response_text(3) is None
  with pytest.raises(ValueError, match="kind"):
    rm_reward.select_text("pairwise", "x")


def test_helpfulness_scores_only_the_summary(rm, tok):
  fn = registry.build("helpfulness_rm", model=rm, tokenizer=tok, **BUCKETS)
  completions = [REASONING_A + SUMMARY, REASONING_B + SUMMARY, SUMMARY,
                 REASONING_A + "The capital of France is Lyon. <answer>Lyon</answer>"]
  out = fn(completions, [None] * 4, [{"prompt": PROMPT}] * 4)
  s = out.scores
  assert s.dtype == np.float32 and s.shape == (4,)
  assert s[0] == s[1] == s[2]  # reasoning changes nothing; the summary alone is read
  assert abs(s[3] - s[0]) > 1e-6  # a different summary scores differently
  np.testing.assert_allclose(s[0], _direct_raw_score(rm, tok, PROMPT, SUMMARY), rtol=1e-5, atol=1e-6)
  assert out.metrics["invalid"] == 0 and out.metrics["truncated"] == 0
  np.testing.assert_allclose(out.metrics["mean"], s.mean(), rtol=1e-6)
  # squash=True returns sigmoid of the same raw score.
  squashed = registry.build("helpfulness_rm", model=rm, tokenizer=tok, squash=True, **BUCKETS)
  np.testing.assert_allclose(squashed(completions, [None] * 4, [{"prompt": PROMPT}] * 4).scores,
                             _sigmoid(s.astype(np.float64)), rtol=1e-5)
  # The prompt is part of what is scored.
  other = fn([SUMMARY], [None], [{"prompt": "What is the capital of Italy?"}]).scores
  assert abs(other[0] - s[2]) > 1e-6


def test_safety_scores_the_whole_response(rm, tok):
  fn = registry.build("safety_rm", model=rm, tokenizer=tok, **BUCKETS)
  completions = [REASONING_A + SUMMARY, REASONING_B + SUMMARY]
  out = fn(completions, [None] * 2, [{"prompt": PROMPT}] * 2)
  assert abs(out.scores[0] - out.scores[1]) > 1e-6  # the reasoning is read too
  assert np.all((out.scores > 0) & (out.scores < 1))
  for text, got in zip(completions, out.scores):
    np.testing.assert_allclose(got, _sigmoid(_direct_raw_score(rm, tok, PROMPT, text)), rtol=1e-5)


def test_batched_scores_equal_one_at_a_time(rm, tok):
  recs = corpora.preference_corpus(37, seed=3)
  completions = [r["chosen"] if i % 2 else r["rejected"] for i, r in enumerate(recs)]
  meta = [{"prompt": r["prompt"]} for r in recs]
  fn = registry.build("helpfulness_rm", model=rm, tokenizer=tok, **BUCKETS)
  batched = fn(completions, [None] * 37, meta).scores  # 2 length-sorted chunks (32 + 5)
  single = np.asarray([fn([c], [None], [m]).scores[0] for c, m in zip(completions[:6], meta[:6])])
  np.testing.assert_allclose(batched[:6], single, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(batched[5], _direct_raw_score(rm, tok, meta[5]["prompt"], completions[5]),
                             rtol=1e-5, atol=1e-6)


def test_bad_completions_score_zero_and_are_counted(rm, tok):
  fn = rm_reward.RewardModelScorer("safety", rm, tok, max_chars=1000, **BUCKETS)
  completions = [None, 42, "", "   ", "x" * 1001, REASONING_A + SUMMARY]
  out = fn(completions, [None] * 6, [{"prompt": PROMPT}] * 6)
  assert out.scores.tolist()[:5] == [0.0] * 5 and out.scores[5] > 0
  assert out.metrics["invalid"] == 5
  help_fn = registry.build("helpfulness_rm", model=rm, tokenizer=tok, **BUCKETS)
  out = help_fn(["<think>never closed", SUMMARY], [None, None], [{}, None])  # no prompts either
  assert out.scores[0] == 0.0 and out.scores[1] != 0.0
  assert out.metrics["invalid"] == 1 and out.metrics["missing_prompt"] == 2
  assert help_fn([], [], []).scores.shape == (0,)


def test_overlong_rows_keep_their_tail(rm, tok):
  fn = registry.build("safety_rm", model=rm, tokenizer=tok, **BUCKETS)
  long = "<think>\n" + "Let me check the sum again. " * 40 + "\n</think>\n\n" + SUMMARY
  out = fn([long], [None], [{"prompt": PROMPT}])
  assert out.metrics["truncated"] == 1
  ids = encode.encode_scored(PROMPT, long, tok, rm_reward.DEFAULT_TEMPLATE)[-MAX_LEN:]
  tokens, lengths = encode.pad_rows([ids] + [[]] * 31, MAX_LEN, tok.pad_id)
  graphdef, params, extra = split_reward_model(rm)
  raw = float(np.asarray(make_score_fn(graphdef)(params, extra, tokens, lengths))[0])
  np.testing.assert_allclose(out.scores[0], _sigmoid(raw), rtol=1e-5)


def test_a_failing_model_never_raises(rm, tok):
  fn = registry.build("helpfulness_rm", model=rm, tokenizer=tok, **BUCKETS)
  healthy = fn([SUMMARY], [None], [{"prompt": PROMPT}])

  def broken(*args):
    raise RuntimeError("device lost")

  fn._score = broken
  out = fn([SUMMARY, SUMMARY], [None, None], [{"prompt": PROMPT}] * 2)
  assert out.scores.tolist() == [0.0, 0.0] and out.metrics["failed"] == 1
  assert healthy.metrics["failed"] == 0 and set(out.metrics) == set(healthy.metrics)


def test_build_errors(rm, tok):
  with pytest.raises(TypeError, match="exactly one"):
    registry.build("helpfulness_rm")
  with pytest.raises(TypeError, match="tokenizer"):
    registry.build("helpfulness_rm", model=rm)
  with pytest.raises(TypeError, match="RewardModel"):
    registry.build("safety_rm", model=object(), tokenizer=tok)
  with pytest.raises(FileNotFoundError, match="reward_model.json"):
    registry.build("safety_rm", path="/nonexistent/rm")


def test_save_load_round_trip(rm, tok, tmp_path):
  directory = str(tmp_path / "safety_rm")
  rm_reward.save_reward_model(rm, directory, kind="safety", tokenizer=tok, max_len=MAX_LEN)
  loaded = rm_reward.load_reward_model(directory)
  assert loaded.kind == "safety" and loaded.max_len == MAX_LEN
  assert loaded.template == rm_reward.DEFAULT_TEMPLATE
  assert loaded.tokenizer.encode(SUMMARY) == tok.encode(SUMMARY)
  np.testing.assert_array_equal(np.asarray(loaded.model.score_head[...]), np.asarray(rm.score_head[...]))
  completions = [REASONING_A + SUMMARY, "I can't help with that."]
  meta = [{"prompt": PROMPT}] * 2
  want = registry.build("safety_rm", model=rm, tokenizer=tok, **BUCKETS)(completions, [None] * 2, meta)
  from_dir = registry.build("safety_rm", path=directory, batch_size=32, min_batch_bucket=32,
                            min_len_bucket=128)  # max_len comes from the directory
  got = from_dir(completions, [None] * 2, meta)
  np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
  with pytest.raises(ValueError, match="'safety' reward model, not 'helpfulness'"):
    registry.build("helpfulness_rm", path=directory)
