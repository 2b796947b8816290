"""Code reward: run the completion's last ```python block against the problem's tests, sandboxed.

Code extraction (`extract_code`): the text inside the last `<answer>…</answer>` when the completion
has an `<answer>` tag (an unterminated one means no answer), else the whole completion; in it, the
last fenced block tagged python/py/python3 (```python … ```), else the last untagged block.
Programs may use the standard library only, plus the `allowed_packages` (see `sandbox.Sandbox`).

Tests come from `answers[i]`, or from `metadata[i]["tests"]` when `answers[i]` is None, in any
form `code_tests.parse_tests` accepts (stdin/stdout pairs, function calls, APPS-style lists, or
their JSON); `code_tests` also says when a run passes.

Score: the fraction of tests passed, or with `all_or_nothing` 1.0 only when all pass. Every
test runs in its own sandboxed process (`sandbox.Sandbox`); the whole batch is graded
concurrently, identical (program, tests) pairs once. The reward never raises: bad test specs,
sandbox failures and grader bugs score 0 and are counted in the metrics.
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import re
import threading
import time
from typing import Any, Mapping, Sequence

import numpy as np

from r1jax.rewards import extract
from r1jax.rewards import sandbox as sandbox_lib
from r1jax.rewards.code_tests import PASSED, WRONG_ANSWER, TestCase, TestSpecError, judge, parse_tests, run_request
from r1jax.rewards.registry import RewardOutput, register

log = logging.getLogger(__name__)

SKIPPED = "skipped"
PYTHON_TAGS = ("python", "python3", "py", "py3")

_FENCE = re.compile(r"```[ \t]*([^\s`]*)[^\n`]*\n(.*?)```", re.DOTALL)


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


# ----------------------------------------------------------------------------------------------
# The batch reward.


class CodeReward:
  """Batch reward function (registry signature): fraction of tests passed per completion.

  Sandbox options (used when the reward builds its own sandbox; with `sandbox=` set them there):
    allowed_packages           top-level packages programs may import besides the standard
                               library, e.g. ["numpy"]: their dirs are bound read-only (default
                               none; list dependencies too).
    unsafe_allow_weak_sandbox  run even when this host cannot give the sandbox mount, network
                               and pid namespaces (default False: building the reward raises,
                               naming what is missing); programs never run as root either way.
  """

  def __init__(self, all_or_nothing: bool = False, wall_s: float = 4.0, cpu_s: float = 2.0,
               memory_mb: int = 256, max_processes: int = 16, max_output_bytes: int = 1 << 20,
               max_workers: int | None = None, mechanisms: Sequence[str] | None = None,
               stop_after_timeout: bool = False, max_tests: int | None = None,
               max_chars: int = extract.DEFAULT_MAX_CHARS, max_code_chars: int = 100_000,
               sandbox: sandbox_lib.Sandbox | None = None, allowed_packages: Sequence[str] = (),
               unsafe_allow_weak_sandbox: bool = False):
    if max_tests is not None and max_tests < 1:
      raise ValueError(f"code reward: max_tests must be >= 1 or None, got {max_tests}")
    if not isinstance(unsafe_allow_weak_sandbox, bool):
      raise ValueError(f"code reward: unsafe_allow_weak_sandbox must be True or False, got "
                       f"{unsafe_allow_weak_sandbox!r}")
    if isinstance(allowed_packages, (str, bytes)):
      raise ValueError(f"code reward: allowed_packages must be a list of package names, got the "
                       f"string {allowed_packages!r}")
    if sandbox is not None and allowed_packages and (
        tuple(allowed_packages) != sandbox.allowed_packages):
      raise ValueError(f"code reward: allowed_packages={list(allowed_packages)} differs from the "
                       f"given sandbox's {list(sandbox.allowed_packages)}; set it on the Sandbox")
    self.all_or_nothing = bool(all_or_nothing)
    # A program that ran out of time on one test is likely to on the rest: optionally skip them.
    self.stop_after_timeout = bool(stop_after_timeout)
    self.max_tests = max_tests
    self.max_chars = int(max_chars)
    self.max_code_chars = int(max_code_chars)
    self.sandbox = sandbox or sandbox_lib.Sandbox(
        sandbox_lib.SandboxLimits(wall_s=wall_s, cpu_s=cpu_s, memory_bytes=int(memory_mb) << 20,
                                  max_processes=max_processes, max_output_bytes=max_output_bytes),
        max_workers=max_workers, mechanisms=mechanisms, allowed_packages=allowed_packages,
        unsafe_allow_weak_sandbox=unsafe_allow_weak_sandbox)
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
