"""Killable worker processes that grade (answer, reference) pairs, with a hard deadline per item.

The math reward's grader (math.py): sympy can hang, so grading runs in a small pool of worker
processes that this process can kill.
- A hard wall-clock deadline per item (`deadline_s`, measured from when the item starts in its
  worker) covers what signals cannot interrupt: the overrunning worker is killed, the item gets
  the outcome `DEADLINE`, and a fresh worker replaces it while the others keep going.
- Each worker grades in its main thread, so a grade function's own `signal.alarm` timeouts
  (math-verify's) work there.
- Workers start with "forkserver" (or "spawn"), never plain fork: JAX lives in the parent and
  forking a process with JAX's threads running is unsafe. The forkserver preloads the modules in
  `preload` (math-verify), so a replacement worker is a fork plus one warm-up item (~0.1-0.4 s),
  not an interpreter start and imports (~1.5 s).
- Each worker caps its address space (`memory_limit_mb`) and arms an RLIMIT_CPU guard per item,
  so a worker orphaned by a crashed trainer dies on its own instead of spinning forever.
- Workers do not import the parent's `__main__` (`_main_hidden`): multiprocessing's forkserver and
  spawn children re-run the main script as `__mp_main__` to find the pickled target, which fails
  for a script without a file (`python -` on stdin, a notebook kernel: every worker dies at
  start-up) and re-runs the top level of a script without an `if __name__ == "__main__":` guard
  in every worker. The grade function and the worker live in importable modules, so nothing is
  lost; a grade function defined in `__main__` itself keeps multiprocessing's default.
The pool starts its workers on first use, reuses them across calls, and stops them on `close()`
or at exit. The grade function, `grade(answer, gold) -> (score, outcome)`, must be picklable (a
module-level function, or a `functools.partial` of one) and must not raise.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
import weakref
from typing import Any, Callable, Sequence

# Outcomes the pool itself gives an item: "deadline" is a worker killed by the hard deadline,
# "crash" a worker that died on it twice, "error" an item that got no answer.
DEADLINE, CRASH, ERROR = "deadline", "crash", "error"

GradeFn = Callable[[str, str], tuple[float, str]]


class PoolStartupError(RuntimeError):
  """A grading worker died or hung before it was ready: the pool cannot grade."""


_MAIN_LOCK = threading.Lock()
_MISSING = object()


@contextlib.contextmanager
def _main_hidden():
  """While a worker starts: `__main__` names neither a module nor a file, so the child's
  `multiprocessing.spawn.prepare` has no main to re-import (see the module docstring).

  `get_preparation_data` reads `sys.modules["__main__"].__spec__` and `.__file__` when the process
  starts; both are put back once `start()` returns (for a pool's first forkserver worker, after
  the forkserver has imported its preloads: about a second). Another thread that starts a process
  in that window would not re-import main in its child either; the lock keeps pools from
  overlapping.
  """
  main = sys.modules.get("__main__")
  if main is None:
    yield
    return
  with _MAIN_LOCK:
    saved = {k: main.__dict__.get(k, _MISSING) for k in ("__spec__", "__file__")}
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
      yield
    finally:
      for k, v in saved.items():
        if v is _MISSING:
          main.__dict__.pop(k, None)
        else:
          main.__dict__[k] = v


def _refers_to_main(obj: Any) -> bool:
  """Whether unpickling `obj` needs the parent's `__main__` (a function defined there)."""
  try:
    return b"__main__" in pickle.dumps(obj)
  except Exception:  # noqa: BLE001 — unpicklable: the start itself will say so
    return False


def _arm_cpu_guard(seconds: float) -> None:
  """Lets the kernel kill this process after `seconds` more CPU time (SIGXCPU)."""
  import resource

  usage = resource.getrusage(resource.RUSAGE_SELF)
  soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
  _, hard = resource.getrlimit(resource.RLIMIT_CPU)
  if hard != resource.RLIM_INFINITY:
    soft = min(soft, hard)
  resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _worker_main(conn, grade: GradeFn, memory_limit_mb: int | None, cpu_guard_s: float,
                 warmup: tuple[str, str] | None) -> None:
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
  if warmup is not None:
    grade(*warmup)  # e.g. math-verify's first parse is slow
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
    score, outcome = grade(answer, gold)
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

  def __init__(self, grade: GradeFn, num_workers: int = 2, deadline_s: float = 5.0,
               start_method: str = "forkserver", memory_limit_mb: int | None = 4096,
               startup_timeout_s: float = 120.0, prefetch: int = 1,
               preload: Sequence[str] = (), warmup: tuple[str, str] | None = ("1", "1")):
    if num_workers < 1:
      raise ValueError(f"GradingPool: num_workers must be >= 1, got {num_workers}")
    if not deadline_s > 0:
      raise ValueError(f"GradingPool: deadline_s must be > 0, got {deadline_s}")
    if start_method not in ("forkserver", "spawn"):
      raise ValueError(f"GradingPool: start_method must be 'forkserver' or 'spawn' (plain fork is "
                       f"unsafe with JAX in the parent), got {start_method!r}")
    self.grade_fn = grade
    self.num_workers = int(num_workers)
    self.deadline_s = float(deadline_s)
    self.warmup = warmup
    self.memory_limit_mb = memory_limit_mb
    self.startup_timeout_s = float(startup_timeout_s)
    self.prefetch = max(0, int(prefetch))
    self.start_method = start_method
    self._ctx = multiprocessing.get_context(start_method)
    # Workers need the parent's __main__ only for a grade function defined there.
    self._needs_main = _refers_to_main(grade)
    if start_method == "forkserver":
      # Only takes effect if this process's forkserver has not started yet.
      self._ctx.set_forkserver_preload([*preload, __name__])
    self._workers: list[_Worker] = []
    self._lock = threading.Lock()  # one batch at a time
    self._finalizer = weakref.finalize(self, _stop_workers, self._workers)
    self.replaced = 0  # workers killed for a deadline or found dead

  def _spawn(self) -> _Worker:
    parent_conn, child_conn = self._ctx.Pipe(duplex=True)
    process = self._ctx.Process(
        target=_worker_main, name="r1jax-grader", daemon=True,
        args=(child_conn, self.grade_fn, self.memory_limit_mb, 2 * self.deadline_s + 5, self.warmup))
    with contextlib.nullcontext() if self._needs_main else _main_hidden():
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
            w.process.join(timeout=1.0)
            raise PoolStartupError(self._startup_failure(w))
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
          raise PoolStartupError(f"grading worker not ready after {self.startup_timeout_s:.0f} s "
                                 f"(start method {self.start_method!r})")
    return [r if r is not None else (0.0, ERROR) for r in results]

  def _startup_failure(self, w: _Worker) -> str:
    why = (f"grading worker exited during startup (exit code {w.process.exitcode}, start method "
           f"{self.start_method!r}); its traceback is on stderr")
    if self._needs_main:
      main = sys.modules.get("__main__")
      why += (f". The grade function is defined in __main__ "
              f"({getattr(main, '__file__', None) or 'no file'}), which each worker must re-import: "
              f"move it to an importable module")
    return why

  def close(self) -> None:
    """Stops the workers; a later `grade` starts fresh ones."""
    with self._lock:
      self._finalizer()
      self._finalizer = weakref.finalize(self, _stop_workers, self._workers)
