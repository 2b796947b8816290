"""Slot scheduler: feeds a queue of requests through a fixed number of decode slots.

- static batching (refill=False): fill every slot, decode until all are done, take the next
  batch. One long row keeps the whole batch waiting.
- slot refill (refill=True): decode until at least `min_refill_rows` rows have finished (or the
  batch is done), read those rows, prefill queued prompts into their slots (one batched prefill
  of just those rows), and go on. The other rows keep their cache and position.

Outputs do not depend on the mode: every row decodes at the same slot offsets and positions, and
samples with keys folded from its own (seed, row id, token index).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Protocol, Sequence

import numpy as np

from r1jax.sampling.runner import Request, RowOutput


class Runner(Protocol):
  slots: int

  def prefill(self, slots: Sequence[int], requests: Sequence[Request]) -> None: ...

  def decode(self, threshold: int) -> None: ...

  def status(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

  def read_rows(self, slots: Sequence[int], n: np.ndarray, stopped: np.ndarray) -> list[RowOutput]: ...


@dataclasses.dataclass
class ScheduleStats:
  prefills: int = 0  # prefill calls
  decode_calls: int = 0  # decode-loop launches (= host syncs)


def run_schedule(runner: Runner, requests: Sequence[Request], *, refill: bool,
                 min_refill_rows: int = 1) -> tuple[dict[int, RowOutput], ScheduleStats]:
  """Runs every request; returns {row_id: RowOutput} and call counts."""
  if min_refill_rows < 1:
    raise ValueError(f"run_schedule: min_refill_rows must be >= 1, got {min_refill_rows}")
  B = runner.slots
  queue = collections.deque(requests)
  owner: list[Request | None] = [None] * B
  results: dict[int, RowOutput] = {}
  stats = ScheduleStats()

  def fill(free: list[int]) -> None:
    take = free[:len(queue)]
    if not take:
      return
    reqs = [queue.popleft() for _ in take]
    for slot, req in zip(take, reqs):
      owner[slot] = req
    runner.prefill(take, reqs)
    stats.prefills += 1

  fill(list(range(B)))
  while True:
    idle = sum(o is None for o in owner)
    if refill and queue:
      threshold = idle + min(min_refill_rows, len(queue))
    else:
      threshold = B + 1  # never reached: run until every row is done
    runner.decode(threshold)
    stats.decode_calls += 1
    done, n, stopped = runner.status()
    finished = [b for b in range(B) if owner[b] is not None and done[b]]
    for slot, out in zip(finished, runner.read_rows(finished, n, stopped)):
      results[owner[slot].row_id] = out
      owner[slot] = None
    if not queue and all(o is None for o in owner):
      return results, stats
    free = [b for b in range(B) if owner[b] is None]
    if refill or len(free) == B:
      fill(free)
