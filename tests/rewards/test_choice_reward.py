"""Multiple-choice grading (GPQA): the chosen letter, and the `multiple_choice` reward."""
import numpy as np
import pytest

from r1jax.rewards import registry
from r1jax.rewards.choice import choice_letter


@pytest.mark.parametrize("text, letter", [
    # An answer block (or, with none, a box) decides, whatever the reasoning mentioned.
    ("<think>A looks tempting</think> <answer>B</answer>", "B"),
    ("<answer> (D) </answer>", "D"),
    ("<answer>C)</answer>", "C"),
    ("<answer>b</answer>", "B"),
    ("<answer>**B**.</answer>", "B"),
    ("<answer>A) 3.2 eV</answer>", "A"),
    ("<answer>(C) the muon</answer>", "C"),
    ("<answer>The answer is D.</answer>", "D"),
    ("<answer>Answer: (C)</answer>", "C"),
    ("<answer>\\boxed{\\text{A}}</answer>", "A"),
    ("The answer is (B) <answer>A</answer>", "A"),
    ("so \\boxed{B}", "B"),
    ("Final: $\\boxed{\\textbf{D}}$", "D"),
    # No tags: the last "answer is" phrase, or a text that is only a letter.
    ("The answer is B", "B"),
    ("I first thought the answer is A; checking again, the answer is (C).", "C"),
    ("**Answer: C**", "C"),
    ("(B)", "B"),
    ("B)", "B"),
    # No answer: none, two candidates, a letter outside A-D, cut off mid-answer, long prose only.
    ("<answer>B or C</answer>", None),
    ("<answer>none of them</answer>", None),
    ("<answer>E</answer>", None),
    ("<answer>B", None),
    ("A) is wrong because the charge differs", None),
    ("", None),
])
def test_choice_letter(text, letter):
  assert choice_letter(text) == letter


def test_multiple_choice_reward_grades_against_the_key():
  reward = registry.build("multiple_choice")
  out = reward(["<answer>B</answer>", "The answer is (C)", "<answer>B or C</answer>", "<answer>B</answer>"],
               ["B", "B", "B", "Z"], [{}] * 4)
  np.testing.assert_array_equal(out.scores, [1.0, 0.0, 0.0, 0.0])
  assert out.metrics["errors"] == 1.0  # a key that is no letter is a counted error, not a wrong answer
  # The accuracy reward routes rows of task "multiple_choice" to it.
  acc = registry.build("accuracy")
  try:
    out = acc(["<answer>A</answer>", "<answer>D</answer>"], ["A", "A"], [{"task": "multiple_choice"}] * 2)
  finally:
    acc.close()
  np.testing.assert_array_equal(out.scores, [1.0, 0.0])
  assert out.metrics["multiple_choice/rows"] == 2.0
