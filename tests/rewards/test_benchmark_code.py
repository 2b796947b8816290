"""LiveCodeBench rows graded in the code sandbox, as evaluation grades them (all or nothing): a right
and a wrong solution of a stdin problem and of a functional (LeetCode) problem."""
import numpy as np
import pytest

from r1jax.data.benchmarks import LoadOptions, load_benchmark
from r1jax.rewards import sandbox as sandbox_lib
from r1jax.rewards.code import CodeReward
from r1jax.rewards.code_tests import TestSpecError, parse_tests
from tests.data.benchmark_files import (LCB_CALL_RIGHT, LCB_CALL_WRONG, LCB_STDIN_RIGHT, LCB_STDIN_WRONG, lcb_rows,
                                        write)


def _fenced(program):
  return f"<think>plan</think> <answer>```python\n{program}```</answer>"


@pytest.fixture(scope="module")
def reward(tmp_path_factory):
  limits = sandbox_lib.SandboxLimits(wall_s=3.0, cpu_s=2, memory_bytes=256 << 20)
  with sandbox_lib.Sandbox(limits, max_workers=2, tmp_root=str(tmp_path_factory.mktemp("runs"))) as sb:
    fn = CodeReward(sandbox=sb, all_or_nothing=True)
    yield fn
    fn.close()


def test_livecodebench_rows_graded_in_the_sandbox(tmp_path, reward):
  stdin, call = load_benchmark("livecodebench", write(tmp_path / "lcb.jsonl", lcb_rows()),
                               LoadOptions(date_from="2024-08-01"))
  programs = [LCB_STDIN_RIGHT, LCB_STDIN_WRONG, LCB_CALL_RIGHT, LCB_CALL_WRONG]
  rows = [stdin, stdin, call, call]
  out = reward([_fenced(p) for p in programs], [r["answer"] for r in rows], rows)
  # The wrong ones pass their public test and fail a private one: all or nothing scores them 0.
  np.testing.assert_array_equal(out.scores, [1.0, 0.0, 1.0, 0.0])
  assert out.metrics["wrong_answers"] == 2 and out.metrics["crashes"] == 0 and out.metrics["bad_tests"] == 0
  # Without the prelude the annotation `List[int]` is a NameError: the prelude is what LeetCode gives.
  bare = {k: v for k, v in call["answer"].items() if k != "prelude"}
  out = reward([_fenced(LCB_CALL_RIGHT)], [bare], [call])
  assert out.scores[0] == 0.0 and out.metrics["crashes"] >= 1 and out.metrics["passed"] == 0
  # A solution that opts into postponed annotations still runs (the prelude is not pasted above it).
  future = "from __future__ import annotations\n" + LCB_CALL_RIGHT
  assert reward([_fenced(future)], [call["answer"]], [call]).scores[0] == 1.0


def test_prelude_only_for_call_tests():
  with pytest.raises(TestSpecError, match="only call tests"):
    parse_tests({"prelude": "import math", "tests": [{"stdin": "", "stdout": "1"}]})
  with pytest.raises(TestSpecError, match="prelude: must be a str"):
    parse_tests({"fn_name": "f", "prelude": 3, "tests": [{"args": [], "expected": 1}]})
  (t,) = parse_tests({"fn_name": "f", "prelude": "import math", "tests": [{"args": [], "expected": 1}]})
  assert t.prelude == "import math" and t.key() != parse_tests({"fn_name": "f", "tests": [
      {"args": [], "expected": 1}]})[0].key()
