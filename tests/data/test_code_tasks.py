"""Offline code tasks: deterministic, well-formed, and checked by two independent solutions.

The expected outputs come from each family's in-process solver; the reference programs (written
separately, mostly with a different algorithm) must pass every generated test in the sandbox.
A few solvers are also checked here against brute force written from the statement alone.
"""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from r1jax.data import records
from r1jax.data.tasks import code_tasks
from r1jax.rewards import code as code_lib
from r1jax.rewards import code_tests
from r1jax.rewards import sandbox as sandbox_lib


@pytest.fixture(scope="module")
def reward(tmp_path_factory):
  limits = sandbox_lib.SandboxLimits(wall_s=4, cpu_s=2)
  fn = code_lib.CodeReward(sandbox=sandbox_lib.Sandbox(
      limits, max_workers=2, tmp_root=str(tmp_path_factory.mktemp("task_runs"))))
  yield fn
  fn.sandbox.close()
  fn.close()


def _fenced(program: str) -> str:
  return f"```python\n{program}```"


def test_generation_is_deterministic_and_seeded():
  a = code_tasks.make_code_tasks(12, seed=3)
  b = code_tasks.make_code_tasks(12, seed=3)
  c = code_tasks.make_code_tasks(12, seed=4)
  assert a == b
  assert [t.tests for t in a] != [t.tests for t in c]
  assert len({t.task_id for t in a + c}) == 24


def test_tasks_cycle_through_families_and_difficulties():
  n = len(code_tasks.FAMILIES) * len(code_tasks.DIFFICULTIES)
  tasks = code_tasks.make_code_tasks(n, seed=0)
  assert {(t.family, t.difficulty) for t in tasks} == set(
      itertools.product(code_tasks.FAMILIES, code_tasks.DIFFICULTIES))
  kinds = {code_tests.parse_tests(t.tests)[0].is_call for t in tasks}
  assert kinds == {True, False}  # both test forms are exercised


def test_every_reference_solution_passes_its_tests(reward):
  tasks = [code_tasks.make_task(family, difficulty, index=i, seed=11, num_tests=3)
           for i, (family, difficulty) in enumerate(
               itertools.product(code_tasks.FAMILIES, code_tasks.DIFFICULTIES))]
  out = reward([_fenced(t.reference_solution) for t in tasks], [t.tests for t in tasks],
               [{}] * len(tasks))
  failed = [t.task_id for t, s in zip(tasks, out.scores) if s != 1.0]
  assert failed == [], out.metrics


def test_tests_tell_wrong_programs_apart(reward):
  wrong = {
      "max_subarray": "input()\nprint(sum(map(int, input().split())))\n",
      "lis_length": "input()\nprint(len(set(input().split())))\n",
      "count_pairs": ("def count_pairs(nums, target):\n  return sum(nums[i] + nums[j] == target "
                      "for i in range(len(nums)) for j in range(i, len(nums)))\n"),
      "merge_intervals": "def merge_intervals(intervals):\n  return sorted(intervals)\n",
  }
  tasks = [code_tasks.make_task(family, "hard", index=0, seed=5, num_tests=6) for family in wrong]
  out = reward([_fenced(wrong[t.family]) for t in tasks], [t.tests for t in tasks],
               [{}] * len(tasks))
  assert (out.scores < 1.0).all(), dict(zip(wrong, out.scores))


def test_prompt_shows_the_first_test_as_the_example():
  stdio = code_tasks.make_task("sum_of_evens", "medium", index=0)
  first = stdio.tests["tests"][0]
  assert first["stdin"] in stdio.prompt and first["stdout"].strip() in stdio.prompt
  call = code_tasks.make_task("rotate_right", "easy", index=0)
  assert call.tests["fn_name"] in call.prompt
  assert repr(call.tests["tests"][0]["expected"]) in call.prompt
  assert "```python" in stdio.prompt


def test_difficulty_scales_input_size():
  def mean_stdin_length(difficulty):
    tasks = [code_tasks.make_task("max_subarray", difficulty, index=i, num_tests=8)
             for i in range(5)]
    return np.mean([len(t["stdin"]) for task in tasks for t in task.tests["tests"][2:]])
  easy, medium, hard = map(mean_stdin_length, code_tasks.DIFFICULTIES)
  assert easy < medium < hard


def test_records_are_canonical_rl_rows():
  spec = records.DatasetSpec(paths=("code_tasks",), kind="rl")
  for task in code_tasks.make_code_tasks(10, seed=2):
    row = records.canonicalize(code_tasks.to_record(task), spec)
    assert isinstance(row, dict), row
    assert row["answer"] == task.tests and row["task"] == "code"
    assert code_tests.parse_tests(row["answer"])  # the reward can read it


def test_bad_arguments_name_the_problem():
  with pytest.raises(KeyError, match="unknown_family"):
    code_tasks.make_task("unknown_family", "easy", 0)
  with pytest.raises(ValueError, match="difficulty"):
    code_tasks.make_task("lis_length", "impossible", 0)
  with pytest.raises(ValueError, match="num_tests"):
    code_tasks.make_task("lis_length", "easy", 0, num_tests=1)


# Brute force from the statements, for solvers whose reference is also the efficient algorithm.


def _lis_brute(xs):
  return max(len(c) for r in range(1, len(xs) + 1) for c in itertools.combinations(xs, r)
             if all(a < b for a, b in zip(c, c[1:])))


def _balanced_brute(s):
  # Balanced strings are exactly those generated by S -> "" | (S) | [S] | {S} | SS.
  from functools import lru_cache

  @lru_cache(None)
  def ok(i, j):
    if i == j:
      return True
    if s[i] + s[j - 1] in ("()", "[]", "{}") and ok(i + 1, j - 1):
      return True
    return any(ok(i, k) and ok(k, j) for k in range(i + 2, j, 2))

  return len(s) % 2 == 0 and ok(0, len(s))


def _merge_brute(intervals):
  # Merge repeatedly until no two intervals touch or overlap.
  spans = [list(x) for x in intervals]
  changed = True
  while changed:
    changed = False
    for i, j in itertools.combinations(range(len(spans)), 2):
      (a, b), (c, d) = spans[i], spans[j]
      if max(a, c) <= min(b, d):
        spans[i] = [min(a, c), max(b, d)]
        del spans[j]
        changed = True
        break
  return sorted(spans)


def test_solvers_match_brute_force_on_small_inputs():
  rng = random.Random(0)
  families = code_tasks.FAMILIES
  for _ in range(150):
    xs = [rng.randint(-5, 5) for _ in range(rng.randint(1, 8))]
    assert families["lis_length"].solve(xs) == _lis_brute(xs)
    s = "".join(rng.choice("()[]{}") for _ in range(rng.randint(0, 8)))
    assert families["balanced_brackets"].solve([s]) == ("YES" if _balanced_brute(s) else "NO")
    spans = [[a, a + rng.randint(0, 4)] for a in (rng.randint(0, 12) for _ in range(5))]
    assert families["merge_intervals"].solve([spans]) == _merge_brute(spans)
