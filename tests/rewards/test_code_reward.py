"""Code reward: extraction, test specs, scoring, failure paths, and the adversarial suite.

Adversarial programs are graded as one batch (as in a training step). Each one's expected stdout
is what it would print if the attack worked (the secret, "connected", "written", …), so a broken
sandbox shows up as a reward above 0; the host-side effects are checked separately.
"""
from __future__ import annotations

import functools
import glob
import json
import os
import site
import socket
import sys
import uuid

import numpy as np
import pytest

from r1jax.rewards import code as code_lib
from r1jax.rewards import code_tests, registry
from r1jax.rewards import sandbox as sandbox_lib
from r1jax.rewards.code import CodeReward
from r1jax.rewards.code_tests import TestCase, TestSpecError
from tests.rewards.sandbox_seams import python_for_uid_drop, refuse_namespaces

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAG = uuid.uuid4().hex[:12]

ADD_TESTS = {"tests": [{"stdin": f"{a} {b}\n", "stdout": f"{a + b}\n"}
                       for a, b in [(1, 2), (-5, 3), (10, 0), (-1, -1), (7, 8)]]}


@functools.lru_cache(maxsize=None)
def _host_site_dirs() -> list[str]:
  """The host's third-party package dirs, as a program trying to import them would list them
  (test_sandbox also walks /usr and /opt for vendored ones)."""
  dirs = site.getsitepackages() + site.getsitepackages([sys.base_prefix])
  dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
  dirs += glob.glob("/usr/lib/python3*/*-packages")
  dirs += glob.glob("/usr/local/lib/python3*/*-packages")
  return [d for d in dict.fromkeys(os.path.realpath(d) for d in dirs) if os.path.isdir(d)]


def _host_package() -> str | None:
  """A third-party package on this host, for the import attack (pip is in nearly every prefix)."""
  for name in ("pip", "setuptools", "yaml", "numpy", "pytest"):
    if any(os.path.isdir(os.path.join(d, name)) for d in _host_site_dirs()):
      return name
  return None


def fenced(program: str, wrap_answer: bool = True) -> str:
  block = f"```python\n{program}\n```"
  return f"<think>plan</think>\n<answer>{block}</answer>" if wrap_answer else block


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory):
  limits = sandbox_lib.SandboxLimits(wall_s=1.5, cpu_s=1, memory_bytes=256 << 20,
                                     max_output_bytes=64 << 10)
  with sandbox_lib.Sandbox(limits, max_workers=2,
                           tmp_root=str(tmp_path_factory.mktemp("code_runs"))) as sb:
    yield sb


@pytest.fixture(scope="module")
def reward(shared_sandbox):
  fn = CodeReward(sandbox=shared_sandbox)
  yield fn
  fn.close()


# ----------------------------------------------------------------------------------------------
# Extraction and parsing.


@pytest.mark.parametrize("completion, expected", [
    ("```python\nprint(1)\n```", "print(1)\n"),
    ("```py\nfirst()\n```\nthen\n```python\nsecond()\n```", "second()\n"),
    ("```python\ntagged()\n```\n```\nuntagged()\n```", "tagged()\n"),
    ("```\nonly_untagged()\n```", "only_untagged()\n"),
    ("```cpp\nint main(){}\n```", None),
    ("<answer>```python\ninside()\n```</answer>", "inside()\n"),
    ("```python\noutside()\n```<answer>no code here</answer>", None),
    ("<answer>```python\ncut_off()\n```", None),           # unterminated answer
    ("```python\nnever_closed()\n", None),                 # unterminated fence
    ("```python\n   \n```", None),
    ("no code at all", None),
    (None, None),
])
def test_extract_code(completion, expected):
  assert code_lib.extract_code(completion) == expected


def test_extract_code_refuses_overlong_completions():
  assert code_lib.extract_code("```python\nx\n```" + " " * 100, max_chars=50) is None


def test_parse_tests_accepts_every_documented_form():
  stdio = [{"stdin": "1\n", "stdout": "2\n"}]
  call = {"fn_name": "f", "tests": [{"args": [1, (2, 3)], "expected": (4,)}]}
  assert code_tests.parse_tests({"tests": stdio}) == [TestCase(stdin="1\n", expected_stdout="2\n")]
  assert code_tests.parse_tests(stdio) == code_tests.parse_tests(json.dumps({"tests": stdio}))
  assert code_tests.parse_tests([{"input": "1\n", "output": "2\n"}]) == code_tests.parse_tests(stdio)
  (parsed,) = code_tests.parse_tests(call)
  assert parsed.is_call and parsed.fn_name == "f"
  assert parsed.args == (1, [2, 3]) and parsed.expected == [4]  # JSON round trip
  apps = code_tests.parse_tests({"inputs": ["1\n", "5\n"], "outputs": ["2\n", "6\n"]})
  assert [t.expected_stdout for t in apps] == ["2\n", "6\n"]
  apps_call = code_tests.parse_tests({"fn_name": "g", "inputs": [[1]], "outputs": [2]})
  assert apps_call[0].fn_name == "g" and apps_call[0].expected == 2


@pytest.mark.parametrize("spec, message", [
    ("{not json", r"answers\[3\]: test spec is a string but not JSON"),
    ({"tests": []}, r"answers\[3\].tests: must be a non-empty list"),
    ({"cases": []}, r"needs 'tests'"),
    ({"tests": [{"stdin": "1", "stdout": 2}]}, r"answers\[3\].tests\[0\].stdout: must be a str"),
    ({"tests": [{"stdin": 1, "stdout": "2"}]}, r"answers\[3\].tests\[0\].stdin"),
    ({"fn_name": "bad name", "tests": [{"args": [], "expected": 1}]}, r"fn_name"),
    ({"fn_name": "f", "tests": [{"args": 1, "expected": 1}]}, r"tests\[0\].args"),
    ({"fn_name": "f", "tests": [{"args": []}]}, r"needs 'expected'"),
    ({"fn_name": "f", "tests": [{"args": [{1, 2}], "expected": 1}]}, r"not JSON-serialisable"),
    ({"inputs": ["1"], "outputs": []}, r"equal length"),
    (42, r"no tests"),
])
def test_parse_tests_errors_name_the_field(spec, message):
  with pytest.raises(TestSpecError, match=message):
    code_tests.parse_tests(spec, "answers[3]")


def test_stdout_matching_rules():
  assert code_tests.stdout_matches("1 2\n3  \n\n\n", "1 2\n3")
  assert code_tests.stdout_matches("a\r\nb\r\n", "a\nb\n")
  assert not code_tests.stdout_matches("1 2", "1  2")
  assert not code_tests.stdout_matches(" 3", "3")          # leading space matters
  assert not code_tests.stdout_matches("3\n4", "3")
  assert code_tests.stdout_matches("", "")


def test_value_equality_rules():
  eq = code_tests.values_equal
  assert eq([1, [2.0000001, "a"]], [1, [2.0, "a"]])
  assert not eq([1, 2], [1, 2, 3]) and not eq(0.1, 0.2)
  assert eq(3, 3.0) and not eq(True, 1) and not eq(1, True) and eq(False, False)
  assert eq(float("nan"), float("nan")) and not eq(float("nan"), 1.0)
  assert eq({"a": [1]}, {"a": [1]}) and not eq({"a": 1}, {"b": 1})
  assert eq(None, None) and not eq(None, 0)


# ----------------------------------------------------------------------------------------------
# Scoring.


def test_registry_builds_the_code_reward(shared_sandbox):
  assert "code" in registry.available()
  fn = registry.build("code", sandbox=shared_sandbox, all_or_nothing=True)
  assert isinstance(fn, CodeReward) and fn.all_or_nothing
  fn.close()


def test_correct_partial_and_broken_programs(reward):
  correct = "a, b = map(int, input().split())\nprint(a + b)"
  wrong_on_negatives = "a, b = map(int, input().split())\nprint(abs(a) + abs(b))"
  completions = [fenced(correct), fenced(wrong_on_negatives, wrap_answer=False),
                 fenced("def f(:"), "I think the answer is 3."]
  out = reward(completions, [ADD_TESTS] * 4, [{}] * 4)
  pairs = [tuple(map(int, t["stdin"].split())) for t in ADD_TESTS["tests"]]
  partial = sum(abs(a) + abs(b) == a + b for a, b in pairs) / len(pairs)
  assert out.scores.dtype == np.float32 and out.scores.shape == (4,)
  np.testing.assert_allclose(out.scores, [1.0, partial, 0.0, 0.0])
  assert 0 < partial < 1
  assert out.metrics["no_code"] == 1 and out.metrics["crashes"] == len(pairs)
  assert out.metrics["pass_rate"] == pytest.approx((1 + partial) / 4)
  assert out.metrics["all_passed"] == pytest.approx(0.25)
  for mechanism in sandbox_lib.MECHANISMS:
    assert out.metrics[f"sandbox/{mechanism}"] == float(mechanism in reward.sandbox.mechanisms)


def test_all_or_nothing_scores_partial_programs_zero_and_stops_early(shared_sandbox):
  fn = CodeReward(sandbox=shared_sandbox, all_or_nothing=True)
  wrong_first = "a, b = map(int, input().split())\nprint(a + b if (a, b) != (1, 2) else 0)"
  correct = "a, b = map(int, input().split())\nprint(a + b)"
  out = fn([fenced(wrong_first), fenced(correct)], [ADD_TESTS] * 2, [{}] * 2)
  fn.close()
  np.testing.assert_array_equal(out.scores, [0.0, 1.0])
  assert out.metrics["skipped"] >= 1  # later tests of the failed program never ran
  assert out.metrics["runs"] + out.metrics["skipped"] == 2 * len(ADD_TESTS["tests"])


def test_stop_after_timeout_skips_remaining_tests(shared_sandbox):
  fn = CodeReward(sandbox=shared_sandbox, stop_after_timeout=True)
  out = fn([fenced("import time\ntime.sleep(30)")], [ADD_TESTS], [{}])
  fn.close()
  assert out.scores[0] == 0.0 and out.metrics["timeouts"] >= 1
  assert out.metrics["timeouts"] + out.metrics["skipped"] == len(ADD_TESTS["tests"])
  assert out.metrics["skipped"] >= 1


def test_call_based_tests(reward):
  spec = {"fn_name": "pair_sums", "tests": [
      {"args": [[1, 2, 3]], "expected": [3, 5]},
      {"args": [[0.1, 0.2]], "kwargs": {}, "expected": [0.30000000000000004]},
      {"args": [[]], "expected": []}]}
  function = ("def pair_sums(xs):\n  print('debug output is ignored')\n"
              "  return tuple(a + b for a, b in zip(xs, xs[1:]))\n"
              "if __name__ == '__main__':\n  raise SystemExit('main block must not run')")
  solution_class = ("class Solution:\n  def pair_sums(self, xs):\n"
                    "    return [round(a + b, 3) for a, b in zip(xs, xs[1:])]")
  crashes_on_empty = "def pair_sums(xs):\n  xs[0]\n  return [a + b for a, b in zip(xs, xs[1:])]"
  wrong_name = "def pairsums(xs):\n  return []"
  out = reward([fenced(p) for p in (function, solution_class, crashes_on_empty, wrong_name)],
               [spec] * 4, [{}] * 4)
  np.testing.assert_allclose(out.scores, [1.0, 1.0, 2 / 3, 0.0], rtol=1e-6)


def test_call_result_cannot_be_forged_by_printing(reward):
  spec = {"fn_name": "f", "tests": [{"args": [], "expected": 1}]}
  forger = ("import sys\nsys.__stdout__.write('\\n' + '@@r1jax-call-result@@' + '1\\n')\n"
            "def f():\n  return 2")
  assert reward([fenced(forger)], [spec], [{}]).scores[0] == 0.0


def test_tests_from_metadata_and_bad_specs_are_counted(reward):
  correct = fenced("a, b = map(int, input().split())\nprint(a + b)")
  out = reward([correct, correct, correct], [None, {"tests": "nope"}, None],
               [{"tests": ADD_TESTS}, {}, {"tests": None}])
  np.testing.assert_array_equal(out.scores, [1.0, 0.0, 0.0])
  assert out.metrics["bad_tests"] == 2


def test_identical_programs_run_once(reward):
  correct = fenced("a, b = map(int, input().split())\nprint(a + b)")
  out = reward([correct] * 4, [ADD_TESTS] * 4, [{}] * 4)
  np.testing.assert_array_equal(out.scores, [1.0] * 4)
  assert out.metrics["runs"] == len(ADD_TESTS["tests"])


def test_max_tests_limits_the_runs(shared_sandbox):
  fn = CodeReward(sandbox=shared_sandbox, max_tests=2)
  out = fn([fenced("print(3)")], [ADD_TESTS], [{}])
  fn.close()
  assert out.metrics["runs"] == 2 and out.scores[0] == 0.5  # "3" is right for 1 + 2 only


def test_grading_never_raises(reward, monkeypatch):
  out = reward(["x", "y"], [ADD_TESTS], [{}, {}])  # length mismatch: a caller bug
  np.testing.assert_array_equal(out.scores, [0.0, 0.0])
  assert out.metrics["grader_errors"] == 1

  def broken_run(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(reward.sandbox, "run", broken_run)
  out = reward([fenced("print(3)")], [ADD_TESTS], [{}])
  assert out.scores[0] == 0.0 and out.metrics["grader_errors"] == 1


# ----------------------------------------------------------------------------------------------
# Adversarial suite: every attack scores 0, the grader survives, the host is untouched.


@pytest.fixture(scope="module")
def bait(tmp_path_factory):
  base = tmp_path_factory.mktemp("bait")
  os.chmod(base, 0o755)
  secret = base / "secret.txt"
  secret.write_text(f"SECRET-{TAG}\n")
  os.chmod(secret, 0o644)
  writable = base / "writable"
  writable.mkdir()
  os.chmod(writable, 0o777)
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(8)
  listener.setblocking(False)
  yield {"secret": str(secret), "writable": str(writable), "port": listener.getsockname()[1],
         "listener": listener}
  listener.close()


def _attacks(bait) -> dict[str, tuple[str, str]]:
  """name -> (program, the stdout it prints if the attack succeeds)."""
  project_file = os.path.join(REPO, "r1jax", "rewards", "registry.py")
  with open(project_file) as f:
    project_first_line = f.readline().rstrip("\n")
  return {
      "infinite_loop": ("while True:\n  pass\nprint('done')", "done"),
      "fork_bomb": ("import os\nwhile True:\n  try:\n    os.fork()\n  except OSError:\n    pass\n",
                    "bombed"),
      "memory_bomb": ("blob = bytearray(2 << 30)\nprint('allocated')", "allocated"),
      "output_flood": ("import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(4096):\n"
                       "  sys.stdout.write(chunk)\nprint('done')", "done"),
      "read_secret": (f"print(open({bait['secret']!r}).read().strip())", f"SECRET-{TAG}"),
      "read_project": (f"print(open({project_file!r}).readline().rstrip())", project_first_line),
      "write_outside": (f"open({bait['writable']!r} + '/pwned_{TAG}', 'w').write('x')\n"
                        f"open('/tmp/pwned_{TAG}', 'w').write('x')\nprint('written')", "written"),
      "socket": (f"import socket\ns = socket.create_connection(('127.0.0.1', {bait['port']}), 1)\n"
                 "s.sendall(b'pwned')\nprint('connected')", "connected"),
      "kill_parent": ("import os, time\nparent = os.getppid()\nos.kill(parent, 9)\n"
                      "time.sleep(0.3)\ntry:\n  os.kill(parent, 0)\n"
                      "except ProcessLookupError:\n  print('parent dead')", "parent dead"),
      "sleep_past_deadline": ("import time\ntime.sleep(30)\nprint('slept')", "slept"),
      "background_process": ("import os, sys\nif os.fork() == 0:\n  os.setsid()\n"
                             "  os.execv(sys.executable, [sys.executable, '-c', "
                             "'import time; time.sleep(3); print(\"daemon survived\")', "
                             f"'daemon_{TAG}'])\n", "daemon survived"),
      "syntax_error": ("print('ok'", "ok"),
      "stderr_flood": ("import sys\nsys.stderr.write('x' * (10 << 20))\nprint('done')", "done"),
      "host_package": (f"import sys\nsys.path.extend({_host_site_dirs()!r})\n"
                       f"import {_host_package() or 'pip'}\nprint('imported')", "imported"),
  }


@pytest.fixture(scope="module")
def adversarial(reward, bait):
  attacks = _attacks(bait)
  names = list(attacks) + ["correct", "partial"]
  completions = [fenced(program) for program, _ in attacks.values()]
  answers = [{"tests": [{"stdin": "", "stdout": success + "\n"}]}
             for _, success in attacks.values()]
  completions += [fenced("a, b = map(int, input().split())\nprint(a + b)"),
                  fenced("a, b = map(int, input().split())\nprint(a + b if a > 0 else 0)")]
  answers += [ADD_TESTS, ADD_TESTS]
  out = reward(completions, answers, [{}] * len(completions))
  return dict(zip(names, out.scores.tolist())), out.metrics


@pytest.mark.parametrize("name", list(_attacks({"secret": "", "writable": "", "port": 0})))
def test_attack_scores_zero(adversarial, name):
  scores, _ = adversarial
  assert scores[name] == 0.0


def test_good_programs_in_a_hostile_batch_are_graded_normally(adversarial):
  scores, _ = adversarial
  pairs = [tuple(map(int, t["stdin"].split())) for t in ADD_TESTS["tests"]]
  assert scores["correct"] == 1.0
  assert scores["partial"] == pytest.approx(sum(a > 0 for a, _ in pairs) / len(pairs))


def test_attack_outcomes_are_counted(adversarial):
  _, metrics = adversarial
  assert metrics["timeouts"] >= 3        # infinite loop, fork bomb, sleep
  assert metrics["memory_kills"] >= 1
  assert metrics["output_limits"] >= 2   # stdout flood, stderr flood
  assert metrics["crashes"] >= 6         # reads, write, socket, syntax error, host package
  assert metrics["sandbox_errors"] == 0 and metrics["grader_errors"] == 0


def test_host_is_untouched_after_the_attacks(adversarial, bait, reward):
  assert not os.path.exists(os.path.join(bait["writable"], f"pwned_{TAG}"))
  assert not os.path.exists(f"/tmp/pwned_{TAG}")
  with pytest.raises(BlockingIOError):
    bait["listener"].accept()
  strays = []
  for entry in os.listdir("/proc"):
    try:
      with open(f"/proc/{entry}/cmdline", "rb") as f:
        if f"daemon_{TAG}".encode() in f.read():
          strays.append(entry)
    except OSError:
      pass
  assert strays == []
  # The grader is alive and still grades.
  out = reward([fenced("a, b = map(int, input().split())\nprint(a + b)")], [ADD_TESTS], [{}])
  assert out.scores[0] == 1.0


def test_stderr_flood_is_an_output_limit(reward):
  out = reward([fenced("import sys\nsys.stderr.write('x' * (10 << 20))\nprint('done')")],
               [{"tests": [{"stdin": "", "stdout": "done\n"}]}], [{}])
  assert out.scores[0] == 0.0
  assert out.metrics["output_limits"] == 1 and out.metrics["crashes"] == 0


def test_host_packages_cannot_be_imported(reward):
  name = _host_package()
  assert name, f"no third-party package in {_host_site_dirs()}: the attack would test nothing"
  program = f"import sys\nsys.path.extend({_host_site_dirs()!r})\nimport {name}\nprint('imported')"
  out = reward([fenced(program)], [{"tests": [{"stdin": "", "stdout": "imported\n"}]}], [{}])
  assert out.scores[0] == 0.0 and out.metrics["crashes"] == 1


def test_weak_sandbox_is_refused_without_the_opt_in(monkeypatch):
  ran = refuse_namespaces(monkeypatch)
  with pytest.raises(RuntimeError, match=r"unshare: Operation not permitted.*cannot contain "
                     r"untrusted code.*set unsafe_allow_weak_sandbox=True in the code reward"):
    registry.build("code", max_workers=1)
  assert all(files == {"main.py": "print(6 * 7)"} for files in ran)  # the probe, no program
  with pytest.raises(RuntimeError, match=r"mountns not requested.*unsafe_allow_weak_sandbox"):
    registry.build("code", max_workers=1, mechanisms=("rlimits", "uid", "audit"))


@pytest.mark.parametrize("options, message", [
    ({"unsafe_allow_weak_sandbox": "true"}, r"unsafe_allow_weak_sandbox must be True or False"),
    ({"allowed_packages": "numpy"}, r"allowed_packages must be a list of package names"),
    ({"allowed_packages": ["no_such_package_r1jax"]}, r"'no_such_package_r1jax' is not importable"),
])
def test_sandbox_options_are_validated(options, message):
  with pytest.raises(ValueError, match=message):
    registry.build("code", max_workers=1, **options)


def test_allowed_packages_must_match_a_given_sandbox(shared_sandbox):
  with pytest.raises(ValueError, match=r"differs from the given sandbox"):
    CodeReward(sandbox=shared_sandbox, allowed_packages=["pluggy"])


def test_allowed_packages_option_lets_programs_import_them(tmp_path):
  pytest.importorskip("pluggy")
  fn = registry.build("code", max_workers=1, wall_s=3, allowed_packages=["pluggy"])
  program = "import pluggy\nprint(pluggy.PluginManager('x').project_name)"
  out = fn([fenced(program)], [{"tests": [{"stdin": "", "stdout": "x\n"}]}], [{}])
  fn.close()
  assert out.scores[0] == 1.0


def test_both_test_forms_work_in_the_audit_only_fallback(tmp_path):
  limits = sandbox_lib.SandboxLimits(wall_s=3, cpu_s=2)
  mechanisms, kwargs = ("rlimits", "audit"), {}
  if os.geteuid() == 0:  # the weak modes never run programs as root: drop to the slot uid
    python = python_for_uid_drop()
    if python is None:
      pytest.skip("outside r1jax: as root the no-mountns modes need an interpreter an "
                  "unprivileged uid can reach, and this host has none")
    mechanisms, kwargs = mechanisms + ("uid",), {"python": python}
  with sandbox_lib.Sandbox(limits, max_workers=2, tmp_root=str(tmp_path), mechanisms=mechanisms,
                           unsafe_allow_weak_sandbox=True, **kwargs) as sb:
    fn = CodeReward(sandbox=sb)
    call = {"fn_name": "double", "tests": [{"args": [21], "expected": 42}]}
    out = fn([fenced("def double(x):\n  print('noise')\n  return 2 * x"),
              fenced("a, b = map(int, input().split())\nprint(a + b)")],
             [call, ADD_TESTS], [{}, {}])
    fn.close()
  np.testing.assert_array_equal(out.scores, [1.0, 1.0])
  assert out.metrics["sandbox/audit"] == 1.0 and out.metrics["sandbox/mountns"] == 0.0
