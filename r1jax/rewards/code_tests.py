"""Tests of code problems: the accepted spec forms, and judging one sandboxed run of a program.

Tests (`parse_tests`) come as any of these forms; a JSON string of one is decoded first (datasets
store tests as text):
  {"tests": [{"stdin": "1 2\\n", "stdout": "3\\n"}, ...]}                stdin -> expected stdout
  {"fn_name": "add", "tests": [{"args": [1, 2], "expected": 3}, ...]}   call: fn(*args, **kwargs)
  {"inputs": [...], "outputs": [...], "fn_name"?: ...}                  APPS-style parallel lists
  [test, ...]                                                           a bare list of tests
A call test may carry its own "fn_name" and "kwargs"; "input"/"output" are accepted for
"stdin"/"stdout". A call spec may give a "prelude": code run in the solution's module before it
(benchmarks whose judges provide imports, e.g. `from typing import *` for LeetCode's annotations).
Stdout matches when the lines agree after stripping trailing whitespace from each line and
dropping trailing blank lines. A call test passes when the returned value, sent back as
JSON (tuples become lists, sets sorted lists), equals "expected" (floats to 1e-6 relative).
A call-based solution is a module defining the function (or a `Solution` class with that method);
its own prints are discarded and its `if __name__ == "__main__":` block does not run.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

from r1jax.rewards import sandbox as sandbox_lib

PASSED, WRONG_ANSWER = "passed", "wrong_answer"
RESULT_MARKER = "@@r1jax-call-result@@"

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
  if call.get("prelude"):
    exec(compile(call["prelude"], "prelude.py", "exec"), namespace)
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
  prelude: str = ""                     # call tests: code run in the solution's module before it

  @property
  def is_call(self) -> bool:
    return self.fn_name is not None

  def key(self) -> str:
    if self.is_call:
      return json.dumps(["call", self.fn_name, list(self.args), self.kwargs, self.expected, self.prelude])
    return json.dumps(["stdio", self.stdin, self.expected_stdout])


# ----------------------------------------------------------------------------------------------
# Parsing: answers -> tests.


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
  fn_name, prelude = None, ""
  if isinstance(spec, Mapping):
    fn_name, prelude = spec.get("fn_name"), spec.get("prelude", "")
    if not isinstance(prelude, str):
      raise TestSpecError(f"{where}.prelude: must be a str, got {type(prelude).__name__}")
    if prelude and fn_name is None:
      raise TestSpecError(f"{where}.prelude: only call tests (with fn_name) take a prelude")
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
  parsed = [_parse_one(t, fn_name, f"{where}.tests[{j}]") for j, t in enumerate(tests)]
  return [dataclasses.replace(t, prelude=prelude) for t in parsed] if prelude else parsed


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
    call = {"fn_name": test.fn_name, "args": list(test.args), "kwargs": dict(test.kwargs),
            "prelude": test.prelude}
    return {"main.py": code, "harness.py": _CALL_HARNESS}, json.dumps(call), "harness.py"
  return {"main.py": code}, test.stdin, "main.py"
