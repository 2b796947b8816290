"""Code reward: run the completion's last ```python block against the problem's tests, sandboxed.

Code extraction (`extract_code`): the text inside the last `<answer>…</answer>` when the completion
has an `<answer>` tag (an unterminated one means no answer), else the whole completion; in it, the
last fenced block tagged python/py/python3 (```python … ```), else the last untagged block.
Programs may use the standard library only (see `sandbox._LAUNCHER`).

Tests (`parse_tests`) come from `answers[i]`, or from `metadata[i]["tests"]` when `answers[i]` is
None; a JSON string of any of these forms is decoded first (datasets store tests as text):
  {"tests": [{"stdin": "1 2\\n", "stdout": "3\\n"}, ...]}                stdin -> expected stdout
  {"fn_name": "add", "tests": [{"args": [1, 2], "expected": 3}, ...]}   call: fn(*args, **kwargs)
  {"inputs": [...], "outputs": [...], "fn_name"?: ...}                  APPS-style parallel lists
  [test, ...]                                                           a bare list of tests
A call test may carry its own "fn_name" and "kwargs"; "input"/"output" are accepted for
"stdin"/"stdout". Stdout matches when the lines agree after stripping trailing whitespace from each
line and dropping trailing blank lines. A call test passes when the returned value, sent back as
JSON (tuples become lists, sets sorted lists), equals "expected" (floats to 1e-6 relative).
A call-based solution is a module defining the function (or a `Solution` class with that method);
its own prints are discarded and its `if __name__ == "__main__":` block does not run.

Score: the fraction of tests passed, or with `all_or_nothing` 1.0 only when all pass. Every
test runs in its own sandboxed process (`sandbox.Sandbox`); the whole batch is graded
concurrently, identical (program, tests) pairs once. The reward never raises: bad test specs,
sandbox failures and grader bugs score 0 and are counted in the metrics.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import logging
import math
import re
import threading
import time
from typing import Any, Mapping, Sequence

import numpy as np

from r1jax.rewards import extract
from r1jax.rewards import sandbox as sandbox_lib
from r1jax.rewards.registry import RewardOutput, register

log = logging.getLogger(__name__)

PASSED, WRONG_ANSWER, SKIPPED = "passed", "wrong_answer", "skipped"
PYTHON_TAGS = ("python", "python3", "py", "py3")
RESULT_MARKER = "@@r1jax-call-result@@"

_FENCE = re.compile(r"```[ \t]*([^\s`]*)[^\n`]*\n(.*?)```", re.DOTALL)

# Entry point for call-based tests: reads {"fn_name", "args", "kwargs"} from stdin, loads main.py
# as a module, calls the function and prints the JSON result after a marker line.
_CALL_HARNESS = r'''
import json, os, sys
def _jsonable(value):
  if isinstance(value, (set, frozenset)):
    try:
      return sorted(value)
    except TypeError:
      return list(value)
  return repr(value)
def _main():
  call = json.loads(sys.stdin.read())
  real_stdout = sys.stdout
  sys.stdout = open(os.devnull, "w")
  namespace = {"__name__": "__solution__", "__builtins__": __builtins__}
  with open("main.py", "rb") as f:
    exec(compile(f.read(), "main.py", "exec"), namespace)
  fn = namespace.get(call["fn_name"])
  if fn is None and isinstance(namespace.get("Solution"), type):
    fn = getattr(namespace["Solution"](), call["fn_name"], None)
  if not callable(fn):
    raise NameError(f"the solution defines no function {call['fn_name']!r}")
  result = fn(*call["args"], **call["kwargs"])
  encoded = json.dumps(result, default=_jsonable)
  sys.stdout = real_stdout
  print("\n" + "@@r1jax-call-result@@" + encoded)
_main()
'''


class TestSpecError(ValueError):
  """A problem's test specification is malformed; the message names the row and field."""

  __test__ = False  # not a pytest test class


@dataclasses.dataclass(frozen=True)
class TestCase:
  """stdin -> expected stdout; or, when `fn_name` is set, fn(*args, **kwargs) -> expected."""

  __test__ = False  # not a pytest test class

  stdin: str = ""
  expected_stdout: str = ""
  fn_name: str | None = None
  args: tuple = ()
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  expected: Any = None

  @property
  def is_call(self) -> bool:
    return self.fn_name is not None

  def key(self) -> str:
    if self.is_call:
      return json.dumps(["call", self.fn_name, list(self.args), self.kwargs, self.expected])
    return json.dumps(["stdio", self.stdin, self.expected_stdout])


# ----------------------------------------------------------------------------------------------
# Parsing: completions -> code, answers -> tests.


def extract_code(completion: Any, max_chars: int = extract.DEFAULT_MAX_CHARS) -> str | None:
  """The program to run (see the module docstring), or None when there is none."""
  text = extract.as_text(completion)
  if len(text) > max_chars:
    return None
  last_open = text.rfind(extract.ANSWER_OPEN)
  if last_open >= 0:
    close = text.find(extract.ANSWER_CLOSE, last_open)
    if close < 0:
      return None  # cut off inside the answer
    text = text[last_open + len(extract.ANSWER_OPEN):close]
  tagged, untagged = None, None
  for match in _FENCE.finditer(text):
    tag = match.group(1).lower()
    if tag in PYTHON_TAGS:
      tagged = match.group(2)
    elif not tag:
      untagged = match.group(2)
  code = tagged if tagged is not None else untagged
  return code if code is not None and code.strip() else None


def _json_value(value: Any, where: str) -> Any:
  """`value` as the JSON round trip the sandbox's answer will take (tuples -> lists, …)."""
  try:
    return json.loads(json.dumps(value))
  except (TypeError, ValueError) as e:
    raise TestSpecError(f"{where}: not JSON-serialisable: {e}") from e


def _parse_one(test: Any, fn_name: str | None, where: str) -> TestCase:
  if not isinstance(test, Mapping):
    raise TestSpecError(f"{where}: a test must be a dict, got {type(test).__name__}")
  fn_name = test.get("fn_name", fn_name)
  if fn_name is not None:
    if not isinstance(fn_name, str) or not fn_name.isidentifier():
      raise TestSpecError(f"{where}.fn_name: {fn_name!r} is not a Python identifier")
    if "expected" not in test:
      raise TestSpecError(f"{where}: call test needs 'expected'")
    args, kwargs = test.get("args", []), test.get("kwargs", {})
    if not isinstance(args, (list, tuple)):
      raise TestSpecError(f"{where}.args: must be a list, got {type(args).__name__}")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
      raise TestSpecError(f"{where}.kwargs: must be a dict with str keys")
    return TestCase(fn_name=fn_name, args=tuple(_json_value(list(args), f"{where}.args")),
                    kwargs=_json_value(dict(kwargs), f"{where}.kwargs"),
                    expected=_json_value(test["expected"], f"{where}.expected"))
  stdin = test.get("stdin", test.get("input", ""))
  expected = test.get("stdout", test.get("output"))
  if not isinstance(stdin, str):
    raise TestSpecError(f"{where}.stdin: must be a str, got {type(stdin).__name__}")
  if not isinstance(expected, str):
    raise TestSpecError(f"{where}.stdout: must be a str (or give fn_name for a call test), "
                        f"got {type(expected).__name__}")
  return TestCase(stdin=stdin, expected_stdout=expected)


def parse_tests(spec: Any, where: str = "answer") -> list[TestCase]:
  """Tests from any accepted form (module docstring); raises TestSpecError naming `where`."""
  if isinstance(spec, (bytes, bytearray)):
    spec = bytes(spec).decode("utf-8", errors="replace")
  if isinstance(spec, str):
    try:
      spec = json.loads(spec)
    except ValueError as e:
      raise TestSpecError(f"{where}: test spec is a string but not JSON: {e}") from e
  fn_name = None
  if isinstance(spec, Mapping):
    fn_name = spec.get("fn_name")
    if "tests" in spec:
      tests = spec["tests"]
    elif "inputs" in spec and "outputs" in spec:
      inputs, outputs = spec["inputs"], spec["outputs"]
      if not (isinstance(inputs, list) and isinstance(outputs, list)
              and len(inputs) == len(outputs)):
        raise TestSpecError(f"{where}: 'inputs' and 'outputs' must be lists of equal length")
      tests = [{"args": i, "expected": o} if fn_name is not None else {"stdin": i, "stdout": o}
               for i, o in zip(inputs, outputs)]
    else:
      raise TestSpecError(f"{where}: a test spec dict needs 'tests' (or 'inputs' and 'outputs'), "
                          f"got keys {sorted(spec)}")
  elif isinstance(spec, (list, tuple)):
    tests = spec
  else:
    raise TestSpecError(f"{where}: no tests (got {type(spec).__name__})")
  if not isinstance(tests, (list, tuple)) or not tests:
    raise TestSpecError(f"{where}.tests: must be a non-empty list")
  return [_parse_one(t, fn_name, f"{where}.tests[{j}]") for j, t in enumerate(tests)]


# ----------------------------------------------------------------------------------------------
# Judging one run.


def stdout_matches(got: str, expected: str) -> bool:
  """Line-wise equality ignoring trailing whitespace on lines and trailing blank lines."""
  lines = lambda s: [line.rstrip() for line in s.replace("\r\n", "\n").rstrip().split("\n")]
  return lines(got) == lines(expected)


def values_equal(got: Any, expected: Any) -> bool:
  """JSON-value equality; floats within 1e-6 relative (1e-9 absolute); bools are not numbers."""
  if isinstance(got, bool) or isinstance(expected, bool):
    return type(got) is type(expected) and got == expected
  if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
    if isinstance(got, float) or isinstance(expected, float):
      if math.isnan(got) or math.isnan(expected):
        return math.isnan(got) and math.isnan(expected)
      return math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
    return got == expected
  if isinstance(got, list) and isinstance(expected, list):
    return len(got) == len(expected) and all(map(values_equal, got, expected))
  if isinstance(got, dict) and isinstance(expected, dict):
    return got.keys() == expected.keys() and all(values_equal(got[k], expected[k]) for k in got)
  return got == expected


def _call_result(stdout: str) -> tuple[bool, Any]:
  """(found, value) from the harness's last marker line."""
  pos = stdout.rfind(RESULT_MARKER)
  if pos < 0:
    return False, None
  line = stdout[pos + len(RESULT_MARKER):].split("\n", 1)[0]
  try:
    return True, json.loads(line)
  except ValueError:
    return False, None


def judge(test: TestCase, result: sandbox_lib.RunResult) -> str:
  """PASSED, WRONG_ANSWER, or the sandbox's failure status."""
  if result.status != sandbox_lib.OK:
    return result.status
  if test.is_call:
    found, value = _call_result(result.stdout)
    return PASSED if found and values_equal(value, test.expected) else WRONG_ANSWER
  return PASSED if stdout_matches(result.stdout, test.expected_stdout) else WRONG_ANSWER


def run_request(code: str, test: TestCase) -> tuple[dict[str, str], str, str]:
  """(files, stdin, entry) for `Sandbox.run`."""
  if test.is_call:
    call = {"fn_name": test.fn_name, "args": list(test.args), "kwargs": dict(test.kwargs)}
    return {"main.py": code, "harness.py": _CALL_HARNESS}, json.dumps(call), "harness.py"
  return {"main.py": code}, test.stdin, "main.py"


# ----------------------------------------------------------------------------------------------
# The batch reward.


class CodeReward:
  """Batch reward function (registry signature): fraction of tests passed per completion."""

  def __init__(self, all_or_nothing: bool = False, wall_s: float = 4.0, cpu_s: float = 2.0,
               memory_mb: int = 256, max_processes: int = 16, max_output_bytes: int = 1 << 20,
               max_workers: int | None = None, mechanisms: Sequence[str] | None = None,
               stop_after_timeout: bool = False, max_tests: int | None = None,
               max_chars: int = extract.DEFAULT_MAX_CHARS, max_code_chars: int = 100_000,
               sandbox: sandbox_lib.Sandbox | None = None):
    if max_tests is not None and max_tests < 1:
      raise ValueError(f"code reward: max_tests must be >= 1 or None, got {max_tests}")
    self.all_or_nothing = bool(all_or_nothing)
    # A program that ran out of time on one test is likely to on the rest: optionally skip them.
    self.stop_after_timeout = bool(stop_after_timeout)
    self.max_tests = max_tests
    self.max_chars = int(max_chars)
    self.max_code_chars = int(max_code_chars)
    self.sandbox = sandbox or sandbox_lib.Sandbox(
        sandbox_lib.SandboxLimits(wall_s=wall_s, cpu_s=cpu_s, memory_bytes=int(memory_mb) << 20,
                                  max_processes=max_processes, max_output_bytes=max_output_bytes),
        max_workers=max_workers, mechanisms=mechanisms)
    self._owns_sandbox = sandbox is None
    self._pool = concurrent.futures.ThreadPoolExecutor(self.sandbox.max_workers, "code-reward")
    log.info("code reward: sandbox mode %s, %d workers", self.sandbox_mode,
             self.sandbox.max_workers)

  @property
  def sandbox_mode(self) -> str:
    return self.sandbox.mode

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any],
               metadata: Sequence[Mapping[str, Any]] | None = None) -> RewardOutput:
    start = time.perf_counter()
    n = len(completions)
    try:
      scores, counts = self._grade(completions, answers, metadata)
    except Exception:  # noqa: BLE001 — a grader bug must not stop training
      log.exception("code reward: grading failed; %d completions score 0", n)
      scores, counts = np.zeros(n, np.float32), collections.Counter(grader_errors=1)
    return RewardOutput(scores=scores, metrics=self._metrics(scores, counts, start))

  def _tests_for(self, i: int, answer: Any, metadata: Sequence[Mapping[str, Any]] | None):
    spec, where = answer, f"answers[{i}]"
    if spec is None and metadata is not None and isinstance(metadata[i], Mapping):
      spec, where = metadata[i].get("tests"), f"metadata[{i}]['tests']"
    tests = parse_tests(spec, where)
    return tests[:self.max_tests] if self.max_tests is not None else tests

  def _grade(self, completions, answers, metadata) -> tuple[np.ndarray, collections.Counter]:
    n = len(completions)
    if len(answers) != n or (metadata is not None and len(metadata) != n):
      raise ValueError(f"code reward: {n} completions, {len(answers)} answers, "
                       f"{None if metadata is None else len(metadata)} metadata rows")
    counts: collections.Counter = collections.Counter()
    programs: dict[tuple[str, str], int] = {}      # (code, tests key) -> program index
    program_tests: list[tuple[str, list[TestCase]]] = []
    row_program: list[int | None] = [None] * n
    for i in range(n):
      try:
        tests = self._tests_for(i, answers[i], metadata)
      except TestSpecError as e:
        counts["bad_tests"] += 1
        log.warning("code reward: %s", e)
        continue
      code = extract_code(completions[i], self.max_chars)
      if code is None or len(code) > self.max_code_chars:
        counts["no_code"] += 1
        continue
      key = (code, json.dumps([t.key() for t in tests]))
      if key not in programs:
        programs[key] = len(program_tests)
        program_tests.append((code, tests))
      row_program[i] = programs[key]

    outcomes = self._run_programs(program_tests)
    scores = np.zeros(n, np.float32)  # [N]
    for i, p in enumerate(row_program):
      if p is None:
        continue
      passed = sum(o == PASSED for o in outcomes[p])
      total = len(outcomes[p])
      counts["all_passed"] += passed == total
      counts["passed_fraction_sum"] += passed / total
      scores[i] = float(passed == total) if self.all_or_nothing else passed / total
    for program_outcomes in outcomes:
      counts.update(program_outcomes)
    return scores, counts

  def _run_programs(self, program_tests: list[tuple[str, list[TestCase]]]) -> list[list[str]]:
    """Runs every (program, test) concurrently, test 0 of all programs first; early stops."""
    outcomes = [[SKIPPED] * len(tests) for _, tests in program_tests]
    stopped = [False] * len(program_tests)
    lock = threading.Lock()

    def run_one(p: int, t: int) -> None:
      if stopped[p]:
        return
      code, tests = program_tests[p]
      outcome = judge(tests[t], self.sandbox.run(*run_request(code, tests[t])))
      with lock:
        outcomes[p][t] = outcome
        if ((self.all_or_nothing and outcome != PASSED) or
            (self.stop_after_timeout and outcome == sandbox_lib.TIMEOUT)):
          stopped[p] = True

    most = max((len(tests) for _, tests in program_tests), default=0)
    jobs = [self._pool.submit(run_one, p, t) for t in range(most)
            for p in range(len(program_tests)) if t < len(program_tests[p][1])]
    for job in jobs:
      job.result()
    return outcomes

  def _metrics(self, scores: np.ndarray, counts: collections.Counter, start: float) -> dict:
    n = len(scores)
    elapsed = time.perf_counter() - start
    runs = sum(counts[k] for k in (PASSED, WRONG_ANSWER) + _RUN_STATUSES)
    metrics = {
        "mean": float(scores.mean()) if n else 0.0,
        "pass_rate": counts["passed_fraction_sum"] / n if n else 0.0,
        "all_passed": counts["all_passed"] / n if n else 0.0,
        "no_code": float(counts["no_code"]),
        "bad_tests": float(counts["bad_tests"]),
        "runs": float(runs),
        "skipped": float(counts[SKIPPED]),
        "passed": float(counts[PASSED]),
        "wrong_answers": float(counts[WRONG_ANSWER]),
        "timeouts": float(counts[sandbox_lib.TIMEOUT]),
        "memory_kills": float(counts[sandbox_lib.MEMORY]),
        "crashes": float(counts[sandbox_lib.CRASH]),
        "output_limits": float(counts[sandbox_lib.OUTPUT_LIMIT]),
        "sandbox_errors": float(counts[sandbox_lib.SANDBOX_ERROR]),
        "grader_errors": float(counts["grader_errors"]),
        "seconds": elapsed,
        "runs_per_s": runs / elapsed if elapsed > 0 else 0.0,
    }
    # sandbox_mode as numbers (metrics are floats): 1.0 for each active isolation mechanism.
    for mechanism in sandbox_lib.MECHANISMS:
      metrics[f"sandbox/{mechanism}"] = float(mechanism in self.sandbox.mechanisms)
    return metrics

  def close(self) -> None:
    self._pool.shutdown(wait=False, cancel_futures=True)
    if self._owns_sandbox:
      self.sandbox.close()


_RUN_STATUSES = (sandbox_lib.CRASH, sandbox_lib.TIMEOUT, sandbox_lib.MEMORY,
                 sandbox_lib.OUTPUT_LIMIT, sandbox_lib.SANDBOX_ERROR)


@register("code")
def build_code_reward(**options) -> CodeReward:
  return CodeReward(**options)
