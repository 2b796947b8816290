"""Math accuracy reward: answer extraction, math-verify grading of real model strings, the worker
pool's hard deadline, and robustness to junk. Expected outcomes are hand-labelled."""
import os
import threading
import time

import pytest

from r1jax.rewards import extract
from r1jax.rewards import grading_pool
from r1jax.rewards import math as math_reward

POLY_3000 = "+".join(f"{i}x^{{{i}}}" for i in range(1, 3001))  # ~37k characters
TOWER = r"\boxed{9^{9^{9^{9}}}}"

# (completion, reference, correct?) — realistic strings, labelled by hand.
REAL_CASES = [
    ("<think>\nhalf of one\n</think>\n<answer>\\frac{1}{2}</answer>", "0.5", True),
    ("<think>6*7</think> <answer>42</answer>", "42", True),
    ("The answer is \\boxed{42}.", "42", True),
    ("So we get $\\boxed{-7}$", "-7", True),
    ("<answer>-3</answer>", "3", False),
    ("<answer>\\sqrt{8}</answer>", "2\\sqrt{2}", True),  # bare LaTeX inside the tag
    ("<answer>2\\sqrt{2}</answer>", "2", False),  # plain parse would read this as 2
    ("<answer>12 cm</answer>", "12", True),
    ("<answer>12\\text{ cm}</answer>", "12", True),
    ("<answer>The answer is 42 apples.</answer>", "42", True),
    ("<answer>\\{3, 1, 2\\}</answer>", "\\{1,2,3\\}", True),
    ("<answer>(1, 2]</answer>", "(1,2]", True),
    ("<answer>(1, 2)</answer>", "(1,2]", False),
    ("<answer>[0, \\infty)</answer>", "[0,\\infty)", True),
    ("<answer>x = 5</answer>", "5", True),
    ("<answer>\\dfrac{\\pi}{2}</answer>", "\\pi/2", True),
    ("<answer>1,000</answer>", "1000", True),
    ("<answer>0.51</answer>", "\\frac{1}{2}", False),
    ("<answer>Final: $\\boxed{x^2+1}$</answer>", "1 + x^2", True),
    ("<think>try \\boxed{3}</think><answer>\\boxed{4}</answer>", "4", True),
    ("<think>maybe \\boxed{3}</think>\n<answer>4</answer>", "3", False),
    ("<think>\\boxed{3} then \\boxed{5}</think>", "5", True),  # no answer tag: last box
    ("<answer>10\\%</answer>", "0.1", True),
]


@pytest.fixture(scope="module")
def reward():
  import jax.numpy as jnp

  jnp.ones(2).block_until_ready()  # JAX is live in the parent, as in the trainer
  r = math_reward.MathReward(num_workers=2, deadline_s=3.0, soft_timeout_s=2)
  yield r
  r.close()


def test_extraction_rules():
  fa = extract.final_answer
  assert fa("<answer> 42 </answer>") == "42"
  assert fa("<answer>1</answer> then <answer>2</answer>") == "2"
  assert fa("<answer>so \\boxed{\\frac{1}{2}} ok</answer>") == "\\frac{1}{2}"
  assert fa("x \\boxed{1} y \\boxed{\\{1,2\\}} z") == "\\{1,2\\}"
  assert fa("\\boxed{a{b}c}") == "a{b}c"
  assert fa("\\boxed 7 apples") == "7"
  assert fa("\\fbox{9}") == "9"
  assert fa("\\boxed{1} and then \\boxed{2") is None  # truncated box: no answer
  assert fa("\\boxed{3} <answer>42") is None  # unterminated answer tag wins over boxes
  assert fa("<answer>   </answer>") is None
  assert fa("no answer here") is None
  assert fa("\\boxed{3} <answer>4</answer>", source="boxed") == "3"
  assert fa("\\boxed{3}", source="answer") is None
  with pytest.raises(ValueError, match="answer source"):
    fa("x", source="last_line")


def test_parse_variants_wrap_bare_latex():
  from math_verify import parse

  # The pitfall: math-verify finds nothing (or the wrong number) in bare LaTeX.
  assert parse("\\sqrt{8}") == []
  assert math_reward.parse_variants("\\sqrt{8}")[0] == "\\boxed{\\sqrt{8}}"
  assert math_reward.parse_variants("$\\sqrt{8}$") == ["$\\sqrt{8}$"]


@pytest.mark.parametrize("completion,gold,correct", REAL_CASES)
def test_grade_in_process(completion, gold, correct):
  answer = extract.final_answer(completion)
  assert answer is not None
  score, outcome = math_reward.grade_answer(answer, gold, soft_timeout_s=2)
  assert score == float(correct), (completion, gold, outcome)


def test_pool_matches_labels(reward):
  completions = [c for c, _, _ in REAL_CASES]
  golds = [g for _, g, _ in REAL_CASES]
  out = reward(completions, golds, [{}] * len(completions))
  expected = [float(c) for _, _, c in REAL_CASES]
  assert out.scores.dtype.name == "float32" and out.scores.shape == (len(REAL_CASES),)
  assert out.scores.tolist() == expected
  assert out.metrics["errors"] == 0 and out.metrics["no_answer"] == 0


def test_gold_formats_and_numeric_golds(reward):
  import numpy as np

  out = reward(["<answer>42</answer>"] * 3 + ["<answer>0.5</answer>", "<answer>10^{-7}</answer>",
                                              "<answer>7</answer>"],
               [42, "$42$", "\\boxed{42}", 0.5, 1e-7, np.int64(7)])
  assert out.scores.tolist() == [1.0] * 6
  assert extract.as_answer_text(1e-7) == "0.0000001"
  assert extract.as_answer_text(float("nan")) == extract.as_answer_text(True) == ""


def test_pool_is_reused_across_calls(reward):
  reward(["<answer>1</answer>"] * 4, ["1"] * 4)
  pids = [w.process.pid for w in reward.pool._workers]
  replaced = reward.pool.replaced
  for k in range(3):
    assert reward([f"<answer>{k}</answer>"], [str(k)]).scores.tolist() == [1.0]
  assert [w.process.pid for w in reward.pool._workers] == pids
  assert reward.pool.replaced == replaced


def test_duplicates_graded_once(reward):
  completions = ["<answer>7</answer>"] * 6 + ["<answer>8</answer>"] * 2
  out = reward(completions, ["7"] * 8)
  assert out.scores.tolist() == [1.0] * 6 + [0.0] * 2
  assert out.metrics["graded"] == 2


def test_bad_completions_score_zero_fast(reward):
  huge = "<answer>" + "9" * (5 << 20) + "</answer>"  # 5 MB
  bad = ["", None, b"\x00\xff\xfe binary", "\x00\xff" * 1000, "<answer>42", "<think>42</think>",
         "\\boxed{42", 12345, huge, "<answer>" + "1" * 20_000 + "</answer>"]
  start = time.perf_counter()
  out = reward(bad, ["42"] * len(bad))
  elapsed = time.perf_counter() - start
  assert out.scores.tolist() == [0.0] * len(bad)
  assert elapsed < 1.0, elapsed
  assert out.metrics["too_long"] == 2  # the 5 MB completion and the 20k-char answer
  assert out.metrics["graded"] == 0


def test_bad_references_score_zero(reward):
  out = reward(["<answer>42</answer>"] * 3, ["", None, "\\text{}"])
  assert out.scores.tolist() == [0.0, 0.0, 0.0]
  assert out.metrics["bad_gold"] >= 2


def test_length_mismatch_is_an_error(reward):
  with pytest.raises(ValueError, match="2 completions but 1 reference"):
    reward(["a", "b"], ["1"])


def _pathological_batch():
  good = ["<answer>\\frac{1}{2}</answer>", "The answer is \\boxed{42}.", "<answer>-3</answer>"]
  completions = [good[0], TOWER, good[1], "<answer>" + POLY_3000 + "</answer>", good[2]]
  golds = ["0.5", "5", "42", "5", "-3"]
  return completions, golds, [1.0, 0.0, 1.0, 0.0, 1.0]


def test_pathological_answers_soft_timeouts(reward):
  """math-verify's own timeouts fire inside the workers (their main thread)."""
  completions, golds, expected = _pathological_batch()
  reward(["<answer>1</answer>"], ["1"])  # workers up (this test may run first)
  reward.max_answer_chars = 100_000  # let the polynomial reach the grader
  try:
    start = time.perf_counter()
    out = reward(completions, golds)
    elapsed = time.perf_counter() - start
  finally:
    reward.max_answer_chars = 10_000
  assert out.scores.tolist() == expected, out.metrics
  assert out.metrics["timeouts"] == 2, out.metrics
  assert elapsed < reward.pool.deadline_s + 2.0, (elapsed, out.metrics)


def test_pathological_answers_hard_deadline_kills_worker():
  """With math-verify's timeouts off, only the hard deadline stops these; the pool survives."""
  completions, golds, expected = _pathological_batch()
  deadline = 4.0
  r = math_reward.MathReward(num_workers=2, deadline_s=deadline, soft_timeout_s=None,
                             max_answer_chars=100_000)
  try:
    r.pool.start()
    r(["<answer>1</answer>"], ["1"])  # wait until both workers are up
    start = time.perf_counter()
    out = r(completions, golds)
    elapsed = time.perf_counter() - start
    diagnostics = (elapsed, out.metrics, r.pool.replaced)
    assert out.scores.tolist() == expected, diagnostics
    assert out.metrics["timeouts"] == 2 and out.metrics["timeouts_hard"] == 2, diagnostics
    assert r.pool.replaced == 2, diagnostics
    # Bounded by the deadline, not by the >30 s the items would take alone; the slack covers
    # worker restarts and a 2-core machine shared with XLA compiles.
    assert elapsed < 2 * deadline + 3.0, diagnostics
    again = r(["<answer>3</answer>", "<answer>4</answer>"], ["3", "3"])
    assert again.scores.tolist() == [1.0, 0.0]
  finally:
    r.close()
  assert all(not w.process.is_alive() for w in r.pool._workers)


def test_worker_killed_from_outside_is_replaced(reward):
  reward(["<answer>1</answer>"], ["1"])
  victim = reward.pool._workers[0].process
  os.kill(victim.pid, 9)
  victim.join(timeout=5)
  out = reward(["<answer>5</answer>", "<answer>6</answer>", "<answer>7</answer>"], ["5", "6", "0"])
  assert out.scores.tolist() == [1.0, 1.0, 0.0]
  assert not victim.is_alive()


def test_grading_from_a_thread(reward):
  """The trainer may score in a thread; the signal-based timeouts live in the workers."""
  result = {}

  def run():
    result["out"] = reward([TOWER, "<answer>2</answer>"], ["5", "2"])

  thread = threading.Thread(target=run)
  thread.start()
  thread.join(timeout=30)
  assert result["out"].scores.tolist() == [0.0, 1.0]
  assert result["out"].metrics["timeouts"] == 1


def test_bad_options_are_rejected():
  with pytest.raises(ValueError, match="soft_timeout_s"):
    math_reward.MathReward(num_workers=0, soft_timeout_s=0.5)
  with pytest.raises(ValueError, match="answer_source"):
    math_reward.MathReward(num_workers=0, answer_source="last")
  with pytest.raises(ValueError, match="fork"):
    grading_pool.GradingPool(math_reward.grade_answer, 1, start_method="fork")


def test_pool_that_cannot_start_raises_instead_of_scoring_zero(caplog):
  """A grader that cannot grade must say so, not score every row 0 (training on zeros)."""
  from r1jax.rewards.combine import CombinedReward
  from r1jax.rewards.registry import RewardUnavailableError

  r = math_reward.MathReward(num_workers=1, deadline_s=3.0)
  try:
    r.pool.startup_timeout_s = 0.0  # no worker can be ready in time, also after the restart
    with caplog.at_level("WARNING", logger="r1jax.rewards.math"):
      with pytest.raises(RewardUnavailableError, match="failed twice.*not ready"):
        r(["<answer>1</answer>", "<answer>2</answer>"], ["1", "2"])
    assert "restarting the pool" in caplog.text
    r.pool.startup_timeout_s = 120.0
    assert r(["<answer>1</answer>"], ["1"]).scores.tolist() == [1.0]  # a later call starts afresh
  finally:
    r.close()
  # The combined reward (what the trainer calls) lets it through instead of zeroing the batch.
  combined = CombinedReward({"accuracy": 1.0}, options={"accuracy": {"options": {"math": {"num_workers": 1}}}})
  try:
    combined.rewards["accuracy"]._verifier("math").pool.startup_timeout_s = 0.0
    with pytest.raises(RewardUnavailableError):
      combined(["<answer>1</answer>"], ["1"], [{"task": "math"}])
  finally:
    combined.close()


def test_pool_restarted_after_a_failure_grades_and_counts_it(monkeypatch):
  r = math_reward.MathReward(num_workers=1, deadline_s=3.0)
  real_grade = r.pool.grade
  calls = []

  def fail_once(tasks):
    calls.append(len(tasks))
    if len(calls) == 1:
      raise grading_pool.PoolStartupError("grading worker exited during startup (exit code 1)")
    return real_grade(tasks)

  monkeypatch.setattr(r.pool, "grade", fail_once)
  try:
    out = r(["<answer>1</answer>", "<answer>3</answer>"], ["1", "2"])
    assert out.scores.tolist() == [1.0, 0.0] and calls == [2, 2]
    assert out.metrics["pool_failures"] == 1 and out.metrics["errors"] == 0, out.metrics
  finally:
    r.close()


def test_pool_failures_reach_the_grpo_metrics():
  """The math reward's failure counters arrive in the GRPO row as reward/accuracy/math/<counter>,
  and are summed (not averaged) over the draws of a dynamic-sampling rollout."""
  from r1jax.rewards.combine import CombinedReward
  from r1jax.train import grpo_metrics
  from r1jax.train.rollout import merge_reward_metrics

  combined = CombinedReward({"accuracy": 1.0, "format": 0.2},
                            options={"accuracy": {"options": {"math": {"num_workers": 0}}}})
  try:
    out = combined(["<answer>1</answer>", "no answer"], ["1", "2"], [{"task": "math"}, {}])
  finally:
    combined.close()
  row = grpo_metrics.reward_metrics(out.metrics)
  for counter in ("pool_failures", "errors", "timeouts", "timeouts_hard", "no_answer", "bad_gold"):
    assert f"reward/accuracy/math/{counter}" in row, sorted(row)
  assert row["reward/accuracy/math/no_answer"] == 1.0 and row["reward/accuracy/math/mean"] == 0.5
  draws = [{"accuracy/math/pool_failures": 1.0, "accuracy/math/errors": 2.0, "accuracy/math/timeouts": 1.0},
           {"accuracy/math/pool_failures": 0.0, "accuracy/math/errors": 0.0, "accuracy/math/timeouts": 2.0}]
  merged = merge_reward_metrics(draws)
  assert merged["accuracy/math/pool_failures"] == 1.0 and merged["accuracy/math/errors"] == 2.0
  assert merged["accuracy/math/timeouts"] == 3.0


# A user script that grades 16 correct answers with worker processes. It has no
# `if __name__ == "__main__":` guard and writes a line at top level: the workers must neither need
# to re-import it (it may have no file: `python -`) nor re-run it.
_SCRIPT = """
import sys
with open({marker!r}, "a") as f:
  f.write("top level ran\\n")
from r1jax.rewards.math import MathReward
reward = MathReward(num_workers=2, deadline_s=60.0, start_method={start_method!r})
out = reward(["<answer>%d</answer>" % i for i in range(16)], [str(i) for i in range(16)])
print("SCORES", out.scores.tolist())
print("METRICS", out.metrics)
reward.close()
"""


def _run_python(tmp_path, script: str, as_stdin: bool):
  import subprocess
  import sys

  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
  if as_stdin:
    proc = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=300)
  else:
    path = tmp_path / "grade_script.py"
    path.write_text(script)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _run_user_script(tmp_path, as_stdin: bool, start_method: str = "forkserver"):
  marker = tmp_path / "top_level_runs.txt"
  proc = _run_python(tmp_path, _SCRIPT.format(marker=str(marker), start_method=start_method), as_stdin)
  assert "SCORES " + str([1.0] * 16) in proc.stdout, (proc.stdout, proc.stderr[-3000:])
  assert marker.read_text().splitlines() == ["top level ran"], marker.read_text()


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_grader_started_from_a_stdin_script_grades(tmp_path, start_method):
  """`python -` has no main file to re-import: before, every worker died at start-up and all 16
  correct answers scored 0 with only a warning."""
  _run_user_script(tmp_path, as_stdin=True, start_method=start_method)


def test_script_without_main_guard_is_not_rerun_in_workers(tmp_path):
  _run_user_script(tmp_path, as_stdin=False)


def test_grade_function_defined_in_main_still_reaches_the_workers(tmp_path):
  """A pool whose grade function lives in the main script keeps multiprocessing's default (the
  workers import the script, so it needs its main guard)."""
  script = """
from r1jax.rewards.grading_pool import GradingPool

def grade(answer, gold):
  return (1.0, "correct") if answer == gold else (0.0, "wrong")

if __name__ == "__main__":
  pool = GradingPool(grade, num_workers=1, warmup=None)
  print("RESULTS", pool.grade([("1", "1"), ("2", "3")]))
  pool.close()
"""
  proc = _run_python(tmp_path, script, as_stdin=False)
  assert "RESULTS [(1.0, 'correct'), (0.0, 'wrong')]" in proc.stdout, proc.stderr[-3000:]


def test_pending_tasks_keep_references_on_one_worker():
  golds = [f"g{i}" for i in range(8) for _ in range(4)]
  tasks = [(str(j), g) for j, g in enumerate(golds)]
  pending = grading_pool._PendingTasks(tasks)
  order, pairs = [], set()
  worker = 0
  while pending:
    task_id = pending.pop_for(worker)
    order.append(task_id)
    pairs.add((golds[task_id], worker))
    worker = 1 - worker  # the two workers alternate, as they do when equally fast
  assert sorted(order) == list(range(len(tasks)))  # every task exactly once
  assert len(pairs) <= 8 + 1  # round-robin would parse every reference in both workers: 16
  # A killed worker's tasks return, go out first, and its references become claimable.
  pending = grading_pool._PendingTasks(tasks)
  first = [pending.pop_for(0) for _ in range(3)]
  pending.push_back(first)
  pending.forget(0)
  assert pending.pop_for(1) == first[0] and len(pending) == len(tasks) - 1
