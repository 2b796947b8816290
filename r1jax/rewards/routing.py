"""Task routing: which reward grades which rows of a batch, decided by each row's task.

A row's task is `metadata[i]["task"]` (`task_of`; `DEFAULT_TASK`, "math", when it names none).
A `Routes` table maps a task to the name of the reward that grades its rows, and `grade_rows`
shows a reward only its rows (the others score 0 from it). It is the one routing mechanism, with
two users:

- the `accuracy` reward (combine.py) routes every row to the reward named by its task: task
  verifiers are rewards registered under the task's name (verifiers.py: "countdown", …; math.py:
  "math"; code.py: "code"), and its `routes` option adds table entries ({"gsm8k": "math"}).
- `CombinedReward` restricts a component to some tasks with the reserved option
  `options[name]["tasks"]` (all-scenario RL, paper §2.3.4: rule rewards for reasoning prompts,
  reward models for general ones): a table that routes those tasks to that component.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from r1jax.rewards.registry import RewardFn, RewardOutput, RewardUnavailableError

log = logging.getLogger(__name__)

DEFAULT_TASK = "math"  # the task of a row whose metadata names none
TASK_KEY = "task"  # the metadata field that names a row's task
ROUTE_KEY = "tasks"  # reserved CombinedReward option: the tasks a component is routed to


def task_of(meta: Mapping[str, Any], task_key: str = TASK_KEY,
            default_task: str = DEFAULT_TASK) -> str:
  """A row's task: `meta[task_key]`, or `default_task` when it names none."""
  task = meta.get(task_key)
  return task if isinstance(task, str) and task else default_task


class Routes:
  """A routing table: task -> the name of the reward that grades that task's rows.

  `table` lists the explicit routes; a task not in it goes to the reward of the same name when
  `by_name` (the accuracy reward's convention), else nowhere (`target` is None).
  """

  def __init__(self, table: Mapping[str, str] | None = None, by_name: bool = False,
               task_key: str = TASK_KEY, default_task: str = DEFAULT_TASK):
    self.table = dict(table or {})
    bad = {k: v for k, v in self.table.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad:
      raise ValueError(f"routes must map task names to reward names, got {bad!r}")
    self.by_name = bool(by_name)
    self.task_key = task_key
    self.default_task = default_task

  @classmethod
  def to_reward(cls, name: str, tasks: Any) -> "Routes":
    """The table of `options[name]["tasks"]`: each listed task routes to reward `name`."""
    if isinstance(tasks, str) or not isinstance(tasks, (list, tuple, set, frozenset)) or not tasks \
        or not all(isinstance(t, str) and t for t in tasks):
      raise ValueError(f"CombinedReward: options[{name!r}][{ROUTE_KEY!r}] must be a non-empty "
                       f"list of task names, got {tasks!r}")
    return cls({task: name for task in tasks})

  def task(self, meta: Mapping[str, Any]) -> str:
    return task_of(meta, self.task_key, self.default_task)

  def target(self, task: str) -> str | None:
    """The reward that grades rows of `task`, or None when the table routes it nowhere."""
    if task in self.table:
      return self.table[task]
    return task if self.by_name else None

  def rows_by_task(self, metadata: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Row indices per task, tasks in first-seen order."""
    rows: dict[str, list[int]] = {}
    for i, meta in enumerate(metadata):
      rows.setdefault(self.task(meta), []).append(i)
    return rows

  def rows_for(self, reward: str, metadata: Sequence[Mapping[str, Any]]) -> list[int]:
    """The rows whose task routes to `reward`."""
    return [i for i, meta in enumerate(metadata) if self.target(self.task(meta)) == reward]


def _checked_scores(name: str, output: Any, n: int) -> tuple[np.ndarray, dict[str, float]]:
  """The [n] float32 scores and metrics of a component's output; raises on a malformed one."""
  if not isinstance(output, RewardOutput):
    raise TypeError(f"reward {name!r} returned {type(output).__name__}, expected RewardOutput")
  scores = np.asarray(output.scores, dtype=np.float32)
  if scores.shape != (n,):
    raise ValueError(f"reward {name!r} returned scores of shape {scores.shape}, expected ({n},)")
  return scores, dict(output.metrics)


def call_safely(name: str, fn: RewardFn, completions: Sequence[Any], answers: Sequence[Any],
                metadata: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, dict[str, float]]:
  """Runs one reward; on any failure returns zeros and `failed=1` instead of raising, except a
  `RewardUnavailableError` (a reward that cannot grade at all), which propagates."""
  n = len(completions)
  try:
    scores, metrics = _checked_scores(name, fn(completions, answers, metadata), n)
  except RewardUnavailableError:
    raise
  except Exception:  # noqa: BLE001 — the whole point: the trainer must keep going
    log.warning("reward %r failed on a batch of %d; its scores are 0 for this batch", name, n,
                exc_info=True)
    return np.zeros(n, np.float32), {"failed": 1.0}
  bad = ~np.isfinite(scores)
  if bad.any():
    scores = np.where(bad, np.float32(0), scores)
    metrics["nonfinite"] = float(bad.sum())
  metrics.setdefault("failed", 0.0)
  return scores, metrics


def grade_rows(name: str, fn: RewardFn, rows: Iterable[int], completions: Sequence[Any],
               answers: Sequence[Any], metadata: Sequence[Mapping[str, Any]]
               ) -> tuple[np.ndarray, dict[str, float]]:
  """Shows `fn` only `rows` (one call; none when there are none); the other rows score 0.

  Returns the [N] float32 scores and `fn`'s metrics plus "rows" and, when there are rows,
  "mean" over them.
  """
  rows = list(rows)
  scores = np.zeros(len(completions), np.float32)  # [N]
  metrics: dict[str, float] = {}
  if rows:
    scores[rows], metrics = call_safely(name, fn, [completions[i] for i in rows],
                                        [answers[i] for i in rows], [metadata[i] for i in rows])
    metrics["mean"] = float(scores[rows].mean())
  metrics["rows"] = float(len(rows))
  return scores, metrics
