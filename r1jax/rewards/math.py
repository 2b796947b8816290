"""Math accuracy reward: extract the final answer, check it against the reference with math-verify.

Per row: the answer string comes from `extract.final_answer` (`<answer>…</answer>`, else the last
`\\boxed{}`); both it and the reference go through `math_verify.parse`, then `verify(gold, pred)`.
math-verify only finds LaTeX inside math delimiters or `\\boxed{}`, and a bare `2\\sqrt{2}` parses
to `2`, so a string without delimiters is parsed as `\\boxed{s}` first, then `$s$`, then as-is.
Exceptions: prose ("The answer is 42 apples") goes as-is first, since math-verify finds numbers
in text and sympy takes ~1 s to build prose as LaTeX; strings that carry their own
`$`/`\\(`/`\\[`/`\\boxed` are parsed as they are. The reference takes the same path, so a
dataset's "0.5", 0.5 and "\\frac{1}{2}" all work.

Grading runs in a small pool of worker processes (`GradingPool`) because sympy can hang:
- math-verify's own timeouts (`soft_timeout_s`, per parse and per comparison) use
  `signal.alarm`, which only works in a process's main thread; each worker grades in its main
  thread, so they work there.
- A hard wall-clock deadline per item (`deadline_s`, measured from when the item starts in its
  worker) covers what signals cannot interrupt: the overrunning worker is killed, the item
  scores 0 and counts as a timeout, and a fresh worker replaces it while the others keep going.
- Workers start with "forkserver" (or "spawn"), never plain fork: JAX lives in the parent and
  forking a process with JAX's threads running is unsafe. The forkserver preloads math-verify,
  so a replacement worker is a fork plus one warm-up parse (~0.1-0.4 s), not an interpreter
  start and imports (~1.5 s).
- Each worker caps its address space (`memory_limit_mb`) and arms an RLIMIT_CPU guard per item,
  so a worker orphaned by a crashed trainer dies on its own instead of spinning forever.
The pool is created on first use, reused across calls, and shut down by `close()` or at exit.

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
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import threading
import time
import weakref
from typing import Any, Mapping, Sequence

import numpy as np

from r1jax.rewards import extract
from r1jax.rewards.registry import RewardOutput, register

log = logging.getLogger(__name__)

# Outcomes of grading one item. "deadline" is a worker killed by the hard deadline.
CORRECT, WRONG, NO_PARSE, BAD_GOLD, TIMEOUT, DEADLINE, ERROR, CRASH = (
    "correct", "wrong", "no_parse", "bad_gold", "timeout", "deadline", "error", "crash")

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
# Worker process.


def _arm_cpu_guard(seconds: float) -> None:
  """Lets the kernel kill this process after `seconds` more CPU time (SIGXCPU)."""
  import resource

  usage = resource.getrusage(resource.RUSAGE_SELF)
  soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
  _, hard = resource.getrlimit(resource.RLIMIT_CPU)
  if hard != resource.RLIM_INFINITY:
    soft = min(soft, hard)
  resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _worker_main(conn, soft_timeout_s: int | None, memory_limit_mb: int | None,
                 cpu_guard_s: float) -> None:
  """Grades (task_id, answer, gold) messages until it reads None or the parent goes away."""
  import resource

  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
  resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
  if memory_limit_mb:
    limit = int(memory_limit_mb) << 20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
      limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))  # MemoryError, not the OOM killer
  silence_math_verify()
  grade_answer("1", "1", soft_timeout_s)  # warm-up: math-verify's first parse is slow
  conn.send(("ready", os.getpid()))
  while True:
    try:
      message = conn.recv()
    except (EOFError, OSError):
      return
    if message is None:
      return
    task_id, answer, gold = message
    _arm_cpu_guard(cpu_guard_s)
    score, outcome = grade_answer(answer, gold, soft_timeout_s)
    conn.send((task_id, score, outcome))


@dataclasses.dataclass
class _Worker:
  process: Any
  conn: Any
  spawned_at: float
  ready: bool = False
  # Task ids sent and not answered, in order; the head is running, the rest wait in the pipe.
  queue: collections.deque = dataclasses.field(default_factory=collections.deque)
  started_at: float = 0.0  # when the head started (as far as this process can tell)


def _stop_workers(workers: list[_Worker]) -> None:
  """Asks each worker to exit, then kills the ones that do not. Safe to call twice."""
  for w in workers:
    try:
      w.conn.send(None)
    except Exception:  # noqa: BLE001 — already dead
      pass
  for w in workers:
    w.process.join(timeout=1.0)
    if w.process.is_alive():
      w.process.kill()
      w.process.join(timeout=5.0)
    w.conn.close()
  workers.clear()


class _PendingTasks:
  """Tasks not yet sent, grouped by reference answer, handed out with reference affinity.

  Each worker caches the references it parsed; round-robin would parse every reference once in
  every worker. A worker takes (1) a task whose reference it owns, else (2) the first task of an
  unowned reference, claiming it, else (3) any task, so no worker idles while work remains.
  """

  def __init__(self, tasks: Sequence[tuple[str, str]]):
    self._golds = [gold for _, gold in tasks]
    self._by_gold: dict[str, collections.deque] = {}
    for task_id, gold in enumerate(self._golds):
      self._by_gold.setdefault(gold, collections.deque()).append(task_id)
    self._owner: dict[str, int] = {}
    self._owned: dict[int, list[str]] = collections.defaultdict(list)
    self._size = len(tasks)

  def __len__(self) -> int:
    return self._size

  def _take(self, gold: str) -> int:
    queue = self._by_gold[gold]
    task_id = queue.popleft()
    if not queue:
      del self._by_gold[gold]
    self._size -= 1
    return task_id

  def pop_for(self, worker: int) -> int:
    owned = self._owned[worker]
    owned[:] = [gold for gold in owned if gold in self._by_gold]
    if owned:
      return self._take(owned[0])
    steal = None
    for gold in self._by_gold:
      if gold not in self._owner:
        self._owner[gold] = worker
        owned.append(gold)
        return self._take(gold)
      steal = gold if steal is None else steal
    return self._take(steal)

  def push_back(self, task_ids: Sequence[int]) -> None:
    """Returns unsent or unfinished tasks; they go out first."""
    for task_id in reversed(task_ids):
      gold = self._golds[task_id]
      if gold not in self._by_gold:
        self._by_gold = {gold: collections.deque(), **self._by_gold}
      self._by_gold[gold].appendleft(task_id)
      self._size += 1

  def forget(self, worker: int) -> None:
    """Worker slot `worker` got a fresh process with an empty cache: release its references."""
    for gold in self._owned.pop(worker, []):
      self._owner.pop(gold, None)


class GradingPool:
  """Persistent worker processes that grade (answer, gold) pairs with a hard per-item deadline.

  `concurrent.futures.ProcessPoolExecutor` cannot do this: it queues items ahead into workers
  without saying when each started, and killing one stuck worker breaks the whole executor.
  Here each worker owns a pipe and is replaced alone. While its running item is young, a worker
  also holds up to `prefetch` queued ones, so it does not idle waiting for this process to be
  scheduled (that round trip costs as much as grading a small integer on a busy machine); the
  queued items of a killed worker go back to the others. An item's deadline runs from when this
  process sees the worker start it: when it is sent to an idle worker, or when the item before
  it is answered.
  """

  def __init__(self, num_workers: int = 2, deadline_s: float = 5.0,
               soft_timeout_s: int | None = 2, start_method: str = "forkserver",
               memory_limit_mb: int | None = 4096, startup_timeout_s: float = 120.0,
               prefetch: int = 1):
    if num_workers < 1:
      raise ValueError(f"GradingPool: num_workers must be >= 1, got {num_workers}")
    if not deadline_s > 0:
      raise ValueError(f"GradingPool: deadline_s must be > 0, got {deadline_s}")
    if start_method not in ("forkserver", "spawn"):
      raise ValueError(f"GradingPool: start_method must be 'forkserver' or 'spawn' (plain fork is "
                       f"unsafe with JAX in the parent), got {start_method!r}")
    self.num_workers = int(num_workers)
    self.deadline_s = float(deadline_s)
    self.soft_timeout_s = soft_timeout_s
    self.memory_limit_mb = memory_limit_mb
    self.startup_timeout_s = float(startup_timeout_s)
    self.prefetch = max(0, int(prefetch))
    self._ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
      # Only takes effect if this process's forkserver has not started yet.
      self._ctx.set_forkserver_preload(["math_verify", __name__])
    self._workers: list[_Worker] = []
    self._lock = threading.Lock()  # one batch at a time
    self._finalizer = weakref.finalize(self, _stop_workers, self._workers)
    self.replaced = 0  # workers killed for a deadline or found dead

  def _spawn(self) -> _Worker:
    parent_conn, child_conn = self._ctx.Pipe(duplex=True)
    process = self._ctx.Process(
        target=_worker_main, name="r1jax-math-grader", daemon=True,
        args=(child_conn, self.soft_timeout_s, self.memory_limit_mb, 2 * self.deadline_s + 5))
    process.start()
    child_conn.close()
    return _Worker(process=process, conn=parent_conn, spawned_at=time.monotonic())

  def _replace(self, index: int) -> None:
    old = self._workers[index]
    if old.process.is_alive():
      old.process.kill()
    old.process.join(timeout=5.0)
    old.conn.close()
    self._workers[index] = self._spawn()
    self.replaced += 1

  def start(self) -> None:
    """Starts missing workers (grading starts them on demand; call early to hide startup)."""
    with self._lock:
      while len(self._workers) < self.num_workers:
        self._workers.append(self._spawn())

  def grade(self, tasks: Sequence[tuple[str, str]]) -> list[tuple[float, str]]:
    """Grades (answer, gold) pairs; returns (score, outcome) per task in order."""
    self.start()
    with self._lock:
      return self._grade_locked(tasks)

  def _wants_more(self, w: _Worker) -> bool:
    """Idle, or room in the queue behind a head that is not (yet) looking stuck."""
    if not w.queue:
      return True
    return (len(w.queue) <= self.prefetch
            and time.monotonic() - w.started_at < self.deadline_s / 4)

  def _grade_locked(self, tasks: Sequence[tuple[str, str]]) -> list[tuple[float, str]]:
    results: list[tuple[float, str] | None] = [None] * len(tasks)
    pending = _PendingTasks(tasks)
    crashes = collections.Counter()
    workers = self._workers

    def retire(k: int, head_outcome: str | None) -> None:
      """Replaces worker k: its head item gets `head_outcome`, queued items go back to pending."""
      queue = workers[k].queue
      if queue and head_outcome is not None:
        head = queue.popleft()
        if head_outcome == CRASH:  # killed from outside, or the item crashed it: one retry
          crashes[head] += 1
          if crashes[head] < 2:
            queue.appendleft(head)
          else:
            results[head] = (0.0, CRASH)
        else:
          results[head] = (0.0, head_outcome)
      pending.push_back(list(queue))
      pending.forget(k)
      self._replace(k)

    while pending or any(w.queue for w in workers):
      for k, w in enumerate(workers):  # top up ready workers
        while w.ready and pending and self._wants_more(w):
          task_id = pending.pop_for(k)
          try:
            w.conn.send((task_id, *tasks[task_id]))
          except (OSError, ValueError):
            pending.push_back([task_id])
            retire(k, CRASH)  # died; the head (if any) may have been running
            break
          if not w.queue:
            w.started_at = time.monotonic()
          w.queue.append(task_id)

      now = time.monotonic()
      waits = [w.started_at + self.deadline_s - now for w in workers if w.queue]
      waits += [w.spawned_at + self.startup_timeout_s - now for w in workers if not w.ready]
      timeout = max(0.0, min(waits)) if waits else None
      by_conn = {w.conn: k for k, w in enumerate(workers) if w.queue or not w.ready}
      for conn in multiprocessing.connection.wait(list(by_conn), timeout=timeout):
        k = by_conn[conn]
        w = workers[k]
        try:
          message = conn.recv()
        except (EOFError, OSError):
          if not w.ready:
            raise RuntimeError(f"math grading worker exited during startup "
                               f"(exit code {w.process.exitcode}); see its stderr")
          retire(k, CRASH)
          continue
        if message[0] == "ready":
          w.ready = True
        elif w.queue and message[0] == w.queue[0]:
          results[w.queue.popleft()] = (float(message[1]), str(message[2]))
          w.started_at = time.monotonic()  # the next queued item starts now

      now = time.monotonic()
      for k, w in enumerate(workers):
        if w.queue and now - w.started_at > self.deadline_s:
          retire(k, DEADLINE)  # killing is the only way to stop a sympy call stuck in C
        elif not w.ready and now - w.spawned_at > self.startup_timeout_s:
          raise RuntimeError(f"math grading worker not ready after {self.startup_timeout_s:.0f} s")
    return [r if r is not None else (0.0, ERROR) for r in results]

  def close(self) -> None:
    """Stops the workers; a later `grade` starts fresh ones."""
    with self._lock:
      self._finalizer()
      self._finalizer = weakref.finalize(self, _stop_workers, self._workers)


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
        num_workers, deadline_s, self.soft_timeout_s, start_method, memory_limit_mb)

  def _grade(self, tasks: list[tuple[str, str]]) -> list[tuple[float, str]]:
    if self.pool is not None:
      return self.pool.grade(tasks)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if self.soft_timeout_s is not None and not in_main_thread:
      raise RuntimeError("math reward with num_workers=0 must run in the main thread "
                         "(math-verify timeouts use signal.alarm)")
    return [grade_answer(a, g, self.soft_timeout_s) for a, g in tasks]

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

    try:
      outcomes = self._grade(list(unique))
    except Exception:  # noqa: BLE001 — e.g. workers that cannot start: score 0, say so, go on
      log.warning("math reward: grading failed; %d answers score 0 (a pool restarts next call)",
                  len(unique), exc_info=True)
      if self.pool is not None:
        self.pool.close()
      counts["pool_failures"] += 1
      outcomes = [(0.0, ERROR)] * len(unique)
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
        "pool_failures": float(counts["pool_failures"]),
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
