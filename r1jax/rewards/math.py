"""Math accuracy reward: extract the final answer, check it against the reference with math-verify.

Per row: the answer string comes from `extract.final_answer` (`<answer>…</answer>`, else the last
`\\boxed{}`); both it and the reference go through `math_verify.parse`, then `verify(gold, pred)`.
math-verify only finds LaTeX inside math delimiters or `\\boxed{}`, and a bare `2\\sqrt{2}` parses
to `2`, so a string without delimiters is parsed as `\\boxed{s}` first, then `$s$`, then as-is.
Exceptions: prose ("The answer is 42 apples") goes as-is first, since math-verify finds numbers
in text and sympy takes ~1 s to build prose as LaTeX; strings that carry their own
`$`/`\\(`/`\\[`/`\\boxed` are parsed as they are. The reference takes the same path, so a
dataset's "0.5", 0.5 and "\\frac{1}{2}" all work.

Grading runs in a small pool of killable worker processes (`grading_pool.GradingPool`) because
sympy can hang:
- math-verify's own timeouts (`soft_timeout_s`, per parse and per comparison) use
  `signal.alarm`, which only works in a process's main thread; each worker grades in its main
  thread, so they work there.
- A hard wall-clock deadline per item (`deadline_s`) covers what signals cannot interrupt: the
  overrunning worker is killed, the item scores 0 and counts as a timeout (`timeouts_hard`), and
  a fresh worker (forkserver with math-verify preloaded) replaces it.
The pool is created on first use, reused across calls, and shut down by `close()` or at exit.
`num_workers=0` grades in this process instead (soft timeouts only, main thread only: debugging).

A pool that cannot grade (workers that die at start-up) is restarted once per batch and counted
in `pool_failures`; if it fails again the reward raises `registry.RewardUnavailableError`, which
reaches the trainer: it never scores a batch 0 because the grader is broken. Workers do not
re-import the parent's `__main__` (grading_pool.py), so a script fed on stdin or one without a
main guard grades normally.

Rows that never reach a worker score 0 and are counted: no answer, completion over `max_chars`,
answer over `max_answer_chars`, empty reference. Identical (answer, reference) pairs in a batch
(common with G samples per prompt) are graded once, and the answers to one reference go to the
same worker where possible, since each worker caches the references it has parsed.

Deadlines are wall-clock (math-verify's `signal.alarm` and this pool's kill): on a machine whose
cores are oversubscribed, a legitimate but slow comparison (sets, intervals: ~0.2-0.5 s of CPU)
can time out and score 0. Give the grader cores, or raise `soft_timeout_s` and `deadline_s`.
"""
from __future__ import annotations

import collections
import functools
import logging
import re
import threading
import time
from typing import Any, Mapping, Sequence

import numpy as np

from r1jax.rewards import extract
from r1jax.rewards.grading_pool import CRASH, DEADLINE, ERROR, GradingPool
from r1jax.rewards.registry import RewardOutput, RewardUnavailableError, register

log = logging.getLogger(__name__)

# Outcomes of grading one item (the pool adds DEADLINE, CRASH and ERROR).
CORRECT, WRONG, NO_PARSE, BAD_GOLD, TIMEOUT = "correct", "wrong", "no_parse", "bad_gold", "timeout"

_DELIMITERS = ("$", "\\(", "\\[", "\\boxed", "\\fbox")
# A run of 3+ ASCII letters that is not a LaTeX command name (`\\sqrt`, `\\text`).
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


# ----------------------------------------------------------------------------------------------
# math-verify logging: silenced (it logs whole inputs) but its timeout messages are counted.


class _TimeoutCounter(logging.Handler):
  """Counts math-verify's "Timeout during …" warnings; emits nothing."""

  def __init__(self):
    super().__init__(level=logging.WARNING)
    self.count = 0

  def emit(self, record: logging.LogRecord) -> None:
    if str(record.msg).startswith("Timeout during"):
      self.count += 1


_TIMEOUTS = _TimeoutCounter()


def silence_math_verify() -> None:
  """Keeps math-verify's logs (which repeat entire inputs) out of the trainer's output."""
  logger = logging.getLogger("math_verify")
  logger.setLevel(logging.WARNING)
  logger.propagate = False
  if _TIMEOUTS not in logger.handlers:
    logger.addHandler(_TIMEOUTS)
  logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)


silence_math_verify()


# ----------------------------------------------------------------------------------------------
# Grading one (answer, reference) pair: runs inside a worker's main thread.


def parse_variants(text: str) -> list[str]:
  """Strings to try with `math_verify.parse`, best first (see the module docstring)."""
  if any(d in text for d in _DELIMITERS):
    return [text]
  wrapped = ["\\boxed{" + text + "}", "$" + text + "$"]
  if _PROSE_WORD.search(text):
    # "The answer is 42 apples": plain extraction finds the number; as LaTeX, the prose is a
    # product of symbols that takes sympy ~1 s to build.
    return [text] + wrapped
  return wrapped + [text]


def _parse(text: str, soft_timeout_s: int | None) -> list | None:
  """Parsed candidates (sympy objects first) or [] if nothing parses; None on a timeout."""
  from math_verify import parse

  fallback: list = []
  for variant in parse_variants(text):
    before = _TIMEOUTS.count
    parsed = parse(variant, parsing_timeout=soft_timeout_s)
    if _TIMEOUTS.count != before:
      return None
    if any(not isinstance(p, str) for p in parsed):
      return parsed
    if parsed and not fallback:
      fallback = parsed  # string-only match: compared as a string if nothing better parses
  return fallback


_GOLD_CACHE: dict[tuple[str, int | None], list] = {}
_GOLD_CACHE_SIZE = 4096


def grade_answer(answer: str, gold: str, soft_timeout_s: int | None = 2) -> tuple[float, str]:
  """Scores one extracted answer against one reference: (1.0 or 0.0, outcome). Never raises.

  Must run in a main thread when `soft_timeout_s` is set (math-verify uses `signal.alarm`).
  """
  try:
    from math_verify import verify

    key = (gold, soft_timeout_s)
    gold_parsed = _GOLD_CACHE.get(key)
    if gold_parsed is None:
      gold_parsed = _parse(gold, soft_timeout_s)
      if gold_parsed is None:
        return 0.0, TIMEOUT
      if not gold_parsed:
        return 0.0, BAD_GOLD
      if len(_GOLD_CACHE) >= _GOLD_CACHE_SIZE:
        _GOLD_CACHE.clear()
      _GOLD_CACHE[key] = gold_parsed
    pred_parsed = _parse(answer, soft_timeout_s)
    if pred_parsed is None:
      return 0.0, TIMEOUT
    if not pred_parsed:
      return 0.0, NO_PARSE
    before = _TIMEOUTS.count
    ok = verify(gold_parsed, pred_parsed, timeout_seconds=soft_timeout_s)
    if _TIMEOUTS.count != before and not ok:
      return 0.0, TIMEOUT
    return (1.0, CORRECT) if ok else (0.0, WRONG)
  except Exception:  # noqa: BLE001 — a sympy bug on one answer scores 0, nothing more
    return 0.0, ERROR


# ----------------------------------------------------------------------------------------------
# The batch reward.


class MathReward:
  """Batch reward function (registry signature): 1.0 for a verified-correct final answer."""

  def __init__(self, num_workers: int = 2, deadline_s: float = 5.0,
               soft_timeout_s: int | None = 2, answer_source: str = "answer_or_boxed",
               max_chars: int = extract.DEFAULT_MAX_CHARS, max_answer_chars: int = 10_000,
               start_method: str = "forkserver", memory_limit_mb: int | None = 4096):
    if answer_source not in extract.ANSWER_SOURCES:
      raise ValueError(f"math reward: answer_source must be one of {extract.ANSWER_SOURCES}, "
                       f"got {answer_source!r}")
    if soft_timeout_s is not None and (int(soft_timeout_s) != soft_timeout_s or soft_timeout_s < 1):
      raise ValueError(f"math reward: soft_timeout_s must be a whole number of seconds >= 1 "
                       f"(signal.alarm) or None, got {soft_timeout_s!r}")
    if num_workers < 0:
      raise ValueError(f"math reward: num_workers must be >= 0, got {num_workers}")
    self.answer_source = answer_source
    self.soft_timeout_s = None if soft_timeout_s is None else int(soft_timeout_s)
    self.max_chars = int(max_chars)
    self.max_answer_chars = int(max_answer_chars)
    # num_workers=0 grades in this process: soft timeouts only, main thread only (debugging).
    self.pool = None if num_workers == 0 else GradingPool(
        functools.partial(grade_answer, soft_timeout_s=self.soft_timeout_s), num_workers,
        deadline_s, start_method, memory_limit_mb, preload=("math_verify", __name__))

  def _grade(self, tasks: list[tuple[str, str]]) -> list[tuple[float, str]]:
    if self.pool is not None:
      return self.pool.grade(tasks)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if self.soft_timeout_s is not None and not in_main_thread:
      raise RewardUnavailableError("math reward with num_workers=0 must run in the main thread "
                                   "(math-verify timeouts use signal.alarm)")
    return [grade_answer(a, g, self.soft_timeout_s) for a, g in tasks]

  def _grade_or_raise(self, tasks: list[tuple[str, str]],
                      counts: collections.Counter) -> list[tuple[float, str]]:
    """Grades `tasks`; a pool that fails is restarted once (counted in `pool_failures`), and one
    that fails again raises `RewardUnavailableError`: scoring a batch 0 because the grader is
    broken would train on wrong rewards."""
    if self.pool is None or not tasks:
      return self._grade(tasks)
    try:
      return self._grade(tasks)
    except Exception as first:  # noqa: BLE001 — e.g. a worker that died at start-up: retry once
      log.warning("math reward: grading failed (%s: %s); restarting the pool for this batch",
                  type(first).__name__, first)
      self.pool.close()
      counts["pool_failures"] += 1
    try:
      return self._grade(tasks)
    except Exception as e:
      self.pool.close()
      raise RewardUnavailableError(
          f"math reward: the grading pool failed twice on a batch of {len(tasks)} answers "
          f"({type(e).__name__}: {e}); refusing to score them 0. To grade in this process "
          f"instead, set the reward option num_workers=0") from e

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any],
               metadata: Sequence[Mapping[str, Any]] | None = None) -> RewardOutput:
    start = time.perf_counter()
    n = len(completions)
    if len(answers) != n:
      raise ValueError(f"math reward: {n} completions but {len(answers)} reference answers")
    counts = collections.Counter()
    row_task: list[int | None] = [None] * n
    unique: dict[tuple[str, str], int] = {}
    for i, (completion, gold) in enumerate(zip(completions, answers)):
      text = extract.as_text(completion)
      if len(text) > self.max_chars:
        counts["too_long"] += 1
        continue
      answer = extract.final_answer(text, self.answer_source)
      if answer is None:
        counts["no_answer"] += 1
        continue
      if len(answer) > self.max_answer_chars:
        counts["answer_too_long"] += 1
        continue
      gold = extract.as_answer_text(gold).strip()
      if not gold:
        counts[BAD_GOLD] += 1
        continue
      row_task[i] = unique.setdefault((answer, gold), len(unique))

    outcomes = self._grade_or_raise(list(unique), counts)
    scores = np.zeros(n, np.float32)  # [N]
    for i, task in enumerate(row_task):
      if task is not None:
        score, outcome = outcomes[task]
        scores[i] = score
        counts[outcome] += 1
    elapsed = time.perf_counter() - start
    metrics = {
        "mean": float(scores.mean()) if n else 0.0,
        "no_answer": float(counts["no_answer"]),
        "no_parse": float(counts[NO_PARSE]),
        "bad_gold": float(counts[BAD_GOLD]),
        "too_long": float(counts["too_long"] + counts["answer_too_long"]),
        # A killed worker's item counts in both; soft (math-verify) timeouts only in the first.
        "timeouts": float(counts[TIMEOUT] + counts[DEADLINE]),
        "timeouts_hard": float(counts[DEADLINE]),
        "errors": float(counts[ERROR] + counts[CRASH]),
        "pool_failures": float(counts["pool_failures"]),  # restarts that then graded the batch
        "graded": float(len(unique)),
        "seconds": elapsed,
    }
    return RewardOutput(scores=scores, metrics=metrics)

  def close(self) -> None:
    if self.pool is not None:
      self.pool.close()


@register("math")
def build_math_reward(**options) -> MathReward:
  return MathReward(**options)
