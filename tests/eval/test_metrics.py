"""Tests for r1jax.eval.metrics: pass@k against exact enumeration, pass@1, cons@k majority vote,
answer normalisation, math-verify equivalence, reflection words and length statistics."""
import collections
import itertools
import re
import subprocess
import sys
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from r1jax.eval import metrics


def brute_force_pass_at_k(n: int, c: int, k: int) -> Fraction:
  """Exact fraction of all k-subsets of n samples (the first c correct) with a correct one."""
  subsets = list(itertools.combinations(range(n), k))
  hits = sum(any(i < c for i in subset) for subset in subsets)
  return Fraction(hits, len(subsets))


# ----------------------------------------------------------------------------------------------
# pass@k


def test_pass_at_k_matches_enumeration_of_all_subsets():
  for n in range(1, 9):
    for c in range(n + 1):
      for k in range(1, n + 1):
        expected = float(brute_force_pass_at_k(n, c, k))
        got = metrics.pass_at_k(n, c, k)
        assert isinstance(got, float)
        assert got == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_edge_cases():
  assert metrics.pass_at_k(16, 0, 1) == 0.0
  assert metrics.pass_at_k(16, 0, 16) == 0.0
  assert metrics.pass_at_k(16, 16, 1) == 1.0
  assert metrics.pass_at_k(16, 16, 16) == 1.0
  assert metrics.pass_at_k(16, 1, 16) == 1.0  # k = n: any correct sample is always drawn
  assert metrics.pass_at_k(16, 5, 1) == pytest.approx(5 / 16, abs=1e-15)  # pass@1 = c / n


def test_pass_at_k_is_stable_for_large_n():
  # C(1000, 300) overflows float64; the product form must still agree with exact arithmetic.
  for n, c, k in [(1000, 1, 300), (1000, 37, 300), (1000, 700, 10), (4096, 3, 64)]:
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert metrics.pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-10, abs=1e-14)


def test_pass_at_k_is_vectorised_over_problems():
  n = np.array([4, 8, 8, 16, 5])
  c = np.array([0, 3, 8, 7, 5])
  got = metrics.pass_at_k(n, c, 4)
  assert isinstance(got, np.ndarray) and got.shape == (5,)
  for i in range(5):
    assert got[i] == pytest.approx(float(brute_force_pass_at_k(n[i], c[i], 4)), abs=1e-12)
  # A scalar n broadcasts against per-problem counts; a 2-D input keeps its shape.
  np.testing.assert_allclose(metrics.pass_at_k(8, [0, 3, 8], 2),
                             [float(brute_force_pass_at_k(8, x, 2)) for x in (0, 3, 8)])
  assert metrics.pass_at_k(np.full((2, 3), 6), np.arange(6).reshape(2, 3), 3).shape == (2, 3)


def test_pass_at_k_errors_name_the_values():
  with pytest.raises(ValueError, match=r"k=5.*n=3"):
    metrics.pass_at_k(3, 1, 5)
  with pytest.raises(ValueError, match=r"k=5.*n=4.*problem 1"):
    metrics.pass_at_k([8, 4], [1, 1], 5)
  with pytest.raises(ValueError, match=r"c=6.*n=4"):
    metrics.pass_at_k(4, 6, 1)
  with pytest.raises(ValueError, match=r"n=4, c=-1"):
    metrics.pass_at_k(4, -1, 1)
  with pytest.raises(ValueError, match="k must be >= 1"):
    metrics.pass_at_k(4, 1, 0)
  with pytest.raises(TypeError, match="k must be an int"):
    metrics.pass_at_k(4, 1, 1.5)
  with pytest.raises(ValueError, match="whole numbers"):
    metrics.pass_at_k(4, 1.5, 1)
  with pytest.raises(TypeError, match="dtype bool"):
    metrics.pass_at_k(4, True, 1)


def test_pass_at_1_mean_is_mean_of_per_problem_means():
  rng = np.random.default_rng(0)
  correct = rng.random((7, 16)) < 0.4  # [P, k]
  expected = sum(row.sum() / 16 for row in correct) / 7
  assert metrics.pass_at_1_mean(correct) == pytest.approx(expected, abs=1e-12)
  # pass@1 is the unbiased pass@k at k = 1.
  assert metrics.pass_at_1_mean(correct) == pytest.approx(
      np.mean(metrics.pass_at_k(16, correct.sum(1), 1)), abs=1e-12)
  # Fractional scores (e.g. partial credit) average the same way.
  assert metrics.pass_at_1_mean([[0.5, 1.0], [0.0, 0.25]]) == pytest.approx(0.4375)


def test_pass_at_1_mean_rejects_bad_input():
  with pytest.raises(ValueError, match="2-D"):
    metrics.pass_at_1_mean([1, 0, 1])
  with pytest.raises(ValueError, match="2-D"):
    metrics.pass_at_1_mean(np.zeros((0, 4)))
  with pytest.raises(ValueError, match=r"problem 1, sample 0"):
    metrics.pass_at_1_mean([[1, 0], [2, 0]])


def test_mean_pass_at_k_matches_enumeration():
  rng = np.random.default_rng(1)
  correct = rng.random((5, 6)) < 0.3  # [P, n]
  table = metrics.mean_pass_at_k(correct, [1, 2, 6])
  assert list(table) == [1, 2, 6]
  for k, value in table.items():
    expected = np.mean([float(brute_force_pass_at_k(6, int(c), k)) for c in correct.sum(1)])
    assert value == pytest.approx(expected, abs=1e-12)
  with pytest.raises(ValueError, match="boolean"):
    metrics.mean_pass_at_k([[0.5, 1.0]], [1])


# ----------------------------------------------------------------------------------------------
# Normalisation, equivalence and cons@k


@pytest.mark.parametrize("a,b", [
    ("42", "$42$"), ("42", "\\boxed{42}"), ("42", " 42. "), ("42", "$\\boxed{42}$"),
    ("0.5", "0.50"), ("3", "3.0"), ("1000", "1,000"), ("\\frac{1}{2}", "\\dfrac{1}{2}"),
    ("\\left( 1, 2 \\right)", "(1,2)"), ("Yes", "yes"), ("x+1", "x + 1"), ("\\text{B}", "B"),
])
def test_normalize_answer_merges_surface_variants(a, b):
  assert metrics.normalize_answer(a) == metrics.normalize_answer(b)


@pytest.mark.parametrize("a,b", [("42", "24"), ("0.5", "0.51"), ("(1,2)", "(2,1)"),
                                 ("1,000", "1000,000"), ("\\boxed{1}+\\boxed{2}", "1}+\\boxed{2")])
def test_normalize_answer_keeps_different_answers_apart(a, b):
  assert metrics.normalize_answer(a) != metrics.normalize_answer(b)


def _fraction_equivalent(a: str, b: str) -> bool:
  return Fraction(a) == Fraction(b)


def test_majority_vote_clusters_equivalent_answers():
  # "1/2" and "0.5" are one cluster of 2, "3" has 2 votes; None (3 of them) never votes.
  answers = ["1/2", "3", "0.5", "3", None, None, None]
  winner, votes = metrics.majority_vote(answers, _fraction_equivalent)
  assert (winner, votes) == ("1/2", 2)  # tie: the cluster seen first wins
  assert metrics.cluster_answers(answers, _fraction_equivalent) == [[0, 2], [1, 3]]
  # Reordered so "3" is seen first, the tie goes the other way.
  assert metrics.majority_vote(["3", "1/2", "0.5", "3"], _fraction_equivalent) == ("3", 2)
  # A strict majority beats first-seen.
  assert metrics.majority_vote(["7", "0.5", "2/4", "1/2"], _fraction_equivalent) == ("0.5", 3)
  # Without an equivalence function "1/2" and "0.5" are different answers.
  assert metrics.majority_vote(["1/2", "3", "0.5", "3"]) == ("3", 2)


def test_majority_vote_none_wins_only_when_everything_is_none():
  assert metrics.majority_vote([None, None, "5", None]) == ("5", 1)
  assert metrics.majority_vote([None, None]) == (None, 0)
  assert metrics.majority_vote([]) == (None, 0)


def test_cons_at_k_scores_the_majority_answer():
  answers = [
      ["1/2", "0.5", "3", None],  # majority 1/2 -> correct against 0.5
      ["3", "1/2", "0.5", "3", "3"],  # majority 3 -> wrong
      [None, None, None],  # nothing extracted -> wrong
      ["2", "4/2", "1"],  # majority 2 -> correct
  ]
  gold = ["0.5", "1/2", "7", "2"]
  per_problem = metrics.consensus_correct(answers, gold, _fraction_equivalent)
  assert per_problem.tolist() == [True, False, False, True]
  assert metrics.cons_at_k(answers, gold, _fraction_equivalent) == 0.5

  # is_correct is called with (winner, gold) and never with a None winner.
  calls = []

  def is_correct(answer, ref):
    assert answer is not None
    calls.append((answer, ref))
    return answer == "3"

  assert metrics.cons_at_k(answers, gold, _fraction_equivalent, is_correct) == 0.25
  assert calls == [("1/2", "0.5"), ("3", "1/2"), ("2", "2")]


def test_cons_at_k_matches_a_counter_reference_on_random_votes():
  rng = np.random.default_rng(2)
  # Answers are "v<value>#<suffix>"; equivalent means the same value. Reference: count values
  # with a Counter, break ties by the first index at which each value appears.
  same_value = lambda a, b: a.split("#")[0] == b.split("#")[0]
  for _ in range(50):
    k = int(rng.integers(1, 9))
    values = rng.integers(0, 4, size=k)
    answers = [None if v == 0 else f"v{v}#{rng.integers(100)}" for v in values]
    counts = collections.Counter(v for v in values if v != 0)
    if counts:
      first_seen = {v: list(values).index(v) for v in counts}
      best = max(counts.values())
      expected_value = min((v for v in counts if counts[v] == best), key=first_seen.get)
    else:
      expected_value = None
    winner, votes = metrics.majority_vote(answers, same_value)
    if expected_value is None:
      assert (winner, votes) == (None, 0)
    else:
      assert winner.split("#")[0] == f"v{expected_value}" and votes == counts[expected_value]
      assert winner == answers[first_seen[expected_value]]  # the cluster's first member


def test_cons_at_k_rejects_bad_input():
  with pytest.raises(ValueError, match="2 answer lists but 1 gold"):
    metrics.cons_at_k([["1"], ["2"]], ["1"])
  with pytest.raises(TypeError, match=r"answers\[0\]\[1\] must be str or None"):
    metrics.cons_at_k([["1", 2]], ["1"])
  with pytest.raises(TypeError, match=r"answers\[0\] must be a list"):
    metrics.cons_at_k(["12"], ["1"])


def test_metrics_module_does_not_import_math_verify():
  code = "import sys, r1jax.eval.metrics; print('math_verify' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"


def test_math_equivalent_uses_math_verify():
  from math_verify import parse, verify

  assert metrics.math_equivalent("\\frac{1}{2}", "0.5")
  assert metrics.math_equivalent("2\\sqrt{2}", "\\sqrt{8}")  # bare LaTeX is wrapped first
  assert metrics.math_equivalent("$\\boxed{\\frac{3}{4}}$", "0.75")
  assert not metrics.math_equivalent("0.51", "1/2")
  assert not metrics.math_equivalent("2\\sqrt{2}", "2")
  assert metrics.math_equivalent("Yes", "yes")  # not math: normalised strings
  # Agrees with math-verify called directly on delimited input.
  assert metrics.math_equivalent("\\frac{2}{4}", "0.5") == verify(parse("$\\frac{2}{4}$"),
                                                                   parse("$0.5$"))
  answers = [["\\frac{1}{2}", "3", "0.5", "3", "\\dfrac{2}{4}"]]
  assert metrics.cons_at_k(answers, ["1/2"], equivalent=metrics.math_equivalent) == 1.0
  assert metrics.cons_at_k(answers, ["1/2"]) == 0.0  # string clusters: "3" wins


# ----------------------------------------------------------------------------------------------
# Reflection words and lengths


def test_reflection_word_counts_whole_words_case_insensitive():
  text = ("Wait, that is wrong. WAIT. I keep waiting; await. Let me re-check: recheck it.\n"
          "Hmm... hmmm. Let me check\n again. However, a Mistake! mistakes. Let me Double-Check.")
  counts = metrics.reflection_word_counts(text)
  assert counts == {"wait": 2, "verify": 0, "re-check": 1, "recheck": 1, "check again": 1,
                    "let me double-check": 1, "mistake": 1, "however": 1, "hmm": 1}
  # Independent reference: the same rule written with \b on each text.
  for word in ("wait", "hmm", "however"):
    assert counts[word] == len(re.findall(rf"\b{word}\b", text, flags=re.IGNORECASE))


def test_reflection_word_frequency_normalisation():
  texts = ["wait " * 3 + "x " * 7, "hmm wait " + "y " * 8, ""]  # 10 + 10 + 0 words
  per_1k = metrics.reflection_word_frequency(texts, words=("wait", "hmm", "verify"))
  assert per_1k == pytest.approx({"wait": 4 / 20 * 1000, "hmm": 1 / 20 * 1000, "verify": 0.0})
  per_completion = metrics.reflection_word_frequency(texts, words=("wait", "hmm"),
                                                     per="completion")
  assert per_completion == pytest.approx({"wait": 4 / 3, "hmm": 1 / 3})
  assert metrics.reflection_word_frequency([], words=("wait",)) == {"wait": 0.0}
  assert metrics.reflection_metrics(texts, words=("wait",)) == pytest.approx(
      {"reflection/wait": 200.0})
  with pytest.raises(TypeError, match="one string"):
    metrics.reflection_word_frequency("wait")
  with pytest.raises(ValueError, match="per must be"):
    metrics.reflection_word_frequency(["wait"], per="token")


def test_response_length_stats_matches_numpy():
  lengths = np.array([[10, 200, 4096], [57, 4096, 1]])
  stats = metrics.response_length_stats(lengths, max_length=4096)
  flat = lengths.ravel().astype(float)
  assert stats == pytest.approx({
      "count": 6.0, "mean": flat.mean(), "std": flat.std(), "min": 1.0,
      "p50": np.median(flat), "p90": np.quantile(flat, 0.9), "max": 4096.0,
      "frac_at_max": 2 / 6})
  assert "frac_at_max" not in metrics.response_length_stats([3])
  with pytest.raises(ValueError, match="no lengths"):
    metrics.response_length_stats([])
  with pytest.raises(ValueError, match="finite and >= 0"):
    metrics.response_length_stats([3, -1])


def test_pass_at_1_stderr_is_the_standard_error_over_problems():
  from r1jax.eval.metrics import pass_at_1_stderr

  correct = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]], bool)
  per_problem = np.array([0.5, 1.0, 0.0, 0.25])
  want = np.sqrt(np.sum((per_problem - per_problem.mean()) ** 2) / 3) / 2
  assert pass_at_1_stderr(correct) == pytest.approx(want)
  assert pass_at_1_stderr(correct[:1]) == 0.0
