"""Format reward on realistic completions, against an independent regex reference of the rule."""
import random
import re
import time

import numpy as np
import pytest

from r1jax.rewards import format as format_reward
from r1jax.rewards.registry import build

TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def reference_strict(text: str, think_in_prompt: bool = False) -> float:
  """The strict rule written as one regex plus tag counts (independent of the implementation)."""
  counts = {tag: text.count(tag) for tag in TAGS}
  if think_in_prompt:
    m = re.fullmatch(r"(.*?)</think>\s*<answer>(.*?)</answer>\s*", text, re.DOTALL)
    ok_counts = counts == {"<think>": 0, "</think>": 1, "<answer>": 1, "</answer>": 1}
  else:
    m = re.fullmatch(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", text, re.DOTALL)
    ok_counts = all(n == 1 for n in counts.values())
  return float(bool(m) and ok_counts and bool(m.group(1).strip()) and bool(m.group(2).strip()))


# (completion, strict, lenient) labelled by hand.
REALISTIC = [
    ("<think>\n2+2 is 4\n</think>\n<answer>\n4\n</answer>", 1.0, 1.0),
    ("\n\n <think>a</think><answer>b</answer>\n\n", 1.0, 1.0),  # leading/trailing whitespace
    ("<think>a</think>  \n  <answer>b</answer>", 1.0, 1.0),
    ("Sure! <think>a</think><answer>b</answer>", 0.0, 0.75),  # text before <think>
    ("<think>a</think><answer>b</answer> Hope this helps!", 0.0, 0.75),  # text after
    ("<think>a</think>So:<answer>b</answer>", 0.0, 0.75),  # text between the blocks
    ("<think>a</think><answer>b</answer><|endoftext|>", 0.0, 0.75),  # special token not skipped
    ("<think>a<think>b</think></think><answer>c</answer>", 0.0, 0.5),  # nested think
    ("<think>a</think><answer>b</answer><answer>c</answer>", 0.0, 0.5),  # repeated answer
    ("<think>a</think><think>b</think><answer>c</answer>", 0.0, 0.5),  # repeated think
    ("<think>a</think><answer>b", 0.0, 0.25),  # unterminated answer (truncated)
    ("<think>a very long thought that never ends", 0.0, 0.0),
    ("<think>a<answer>b</answer></think>", 0.0, 0.5),  # answer nested in think
    ("<answer>b</answer><think>a</think>", 0.0, 0.5),  # wrong order
    ("<think></think><answer>b</answer>", 0.0, 0.5),  # empty reasoning
    ("<think>a</think><answer> </answer>", 0.0, 0.5),  # empty answer
    ("<Think>a</Think><answer>b</answer>", 0.0, 0.25),  # wrong case
    ("just the answer: 4", 0.0, 0.0),
]


@pytest.mark.parametrize("text,strict,lenient", REALISTIC)
def test_realistic_completions(text, strict, lenient):
  assert format_reward.format_score(text, "strict") == strict
  assert format_reward.format_score(text, "lenient") == lenient
  assert reference_strict(text) == strict


def test_think_in_prompt():
  score = lambda t, m="strict": format_reward.format_score(t, m, think_in_prompt=True)
  assert score("2+2 is 4\n</think>\n<answer>4</answer>\n") == 1.0
  assert score("<think>2+2</think><answer>4</answer>") == 0.0  # a second <think>
  assert score("</think><answer>4</answer>") == 0.0  # empty reasoning
  assert score("2+2 is 4 <answer>4</answer>") == 0.0  # never closed the reasoning
  assert score("reasoning</think><answer>4</answer> done", "lenient") == 0.75
  # Without the option, the same completion lacks its opening tag.
  assert format_reward.format_score("x</think><answer>4</answer>") == 0.0


def _random_completion(rng: random.Random) -> str:
  """Random fragment soup: mostly malformed, exercises every tag combination."""
  pieces = list(TAGS) + ["", " ", "\n", "abc", "4", "  x y  ", "<", "think>"]
  weights = [6, 6, 6, 6, 2, 3, 3, 4, 2, 2, 1, 1]
  return "".join(rng.choices(pieces, weights, k=rng.randint(0, 9)))


def _mutated_template(rng: random.Random) -> str:
  """The template with each part randomly kept, dropped, doubled or replaced: near misses."""
  outer = lambda: rng.choice(["", " ", "\n", "\n\n", "Sure!"])
  inner = lambda: rng.choice(["reasoning 2+2", " 4 ", "x", ""])
  parts = [outer(), "<think>", inner(), "</think>", outer(), "<answer>", inner(), "</answer>",
           outer()]
  out = []
  for part in parts:
    r = rng.random()
    out.append("" if r < 0.08 else part * 2 if r < 0.14 else part)
  if rng.random() < 0.1:
    i, j = rng.sample(range(len(out)), 2)
    out[i], out[j] = out[j], out[i]
  return "".join(out)


@pytest.mark.parametrize("think_in_prompt", [False, True])
def test_matches_regex_reference_on_random_strings(think_in_prompt):
  rng = random.Random(0)
  texts = [_random_completion(rng) for _ in range(2000)]
  texts += [_mutated_template(rng) for _ in range(2000)]
  if think_in_prompt:  # the completion starts inside the reasoning
    texts = [t.replace("<think>", "", 1) for t in texts]
  n_pass = 0
  for text in texts:
    strict = format_reward.format_score(text, "strict", think_in_prompt)
    lenient = format_reward.format_score(text, "lenient", think_in_prompt)
    assert strict == reference_strict(text, think_in_prompt), repr(text)
    assert (lenient == 1.0) == (strict == 1.0), repr(text)
    assert lenient in (0.0, 0.25, 0.5, 0.75, 1.0)
    n_pass += strict == 1.0
  assert n_pass >= 100  # the sample holds passing strings, not only failures


def test_batch_reward_and_bad_inputs():
  fn = build("format")
  huge = "<think>" + "a" * (5 << 20) + "</think><answer>1</answer>"  # 5 MB
  completions = ["<think>a</think><answer>b</answer>", "", None, b"\x00\xff\xfe", "\x00\xff" * 500,
                 huge, 3.5, b"<think>a</think><answer>b</answer>"]
  start = time.perf_counter()
  out = fn(completions, [None] * len(completions), [{}] * len(completions))
  assert time.perf_counter() - start < 0.5
  np.testing.assert_array_equal(out.scores, np.array([1, 0, 0, 0, 0, 0, 0, 1], np.float32))
  assert out.scores.dtype == np.float32
  assert out.metrics["too_long"] == 1 and out.metrics["empty"] == 3  # "", None, 3.5
  assert out.metrics["mean"] == pytest.approx(out.scores.mean())


def test_options_are_validated():
  with pytest.raises(ValueError, match="mode"):
    build("format", mode="partial")
  lenient = build("format", mode="lenient")
  assert lenient(["Hi <think>a</think><answer>b</answer>"]).scores.tolist() == [0.75]


def test_allow_summary_accepts_the_r1_format_only():
  from r1jax.rewards.format import FormatReward

  r1 = "<think>\n68 + 83: 8 + 3 = 11, carry 1 ... = 151.\n</think>\n\nAdding column by column gives 151. <answer>151</answer>"
  strict, summary = FormatReward(), FormatReward(allow_summary=True)
  assert strict([r1]).scores.tolist() == [0.0]  # R1-Zero format: nothing between the blocks
  assert summary([r1]).scores.tolist() == [1.0]
  # Still exactly one of each tag, in order, nothing after the answer.
  for bad in (r1 + " trailing", r1.replace("<think>", ""), "<answer>1</answer>" + r1,
              r1.replace("Adding", "<think>x</think> Adding")):
    assert summary([bad]).scores.tolist() == [0.0], bad
