"""Weighted sum of registered rewards, and an `accuracy` reward that routes rows by task.

`CombinedReward({"accuracy": 1.0, "format": 1.0}, options={"accuracy": {...}})` builds each
named reward once and, per batch, returns the weighted total (the paper sums accuracy, format and
language rewards with weight 1), every component's scores, and metrics named
`"<reward>/<metric>"`. A component that raises, or returns scores of the wrong shape, contributes
zeros, logs a warning and counts `"<reward>/failed"`; the trainer never sees the exception.
Non-finite scores are zeroed and counted in `"<reward>/nonfinite"`.

The `accuracy` reward picks the verifier per row from `metadata[i][task_key]` ("task"; rows
without one are `default_task`, "math"): task names map to registered reward names through
`routes` (by default a task is graded by the reward of the same name: "math" → the math reward,
"code" → the code reward). Tasks whose module exposes `verify(completion, answer) -> float`
join with `registry.register_item_verifier(task, verify)`. Rows of an unknown task score 0 and
are counted in `unrouted`.

Per-reward task routing (all-scenario RL, paper §2.3.4: rule rewards for reasoning prompts,
reward models for general ones): `options[name]["tasks"]` (a reserved key, not passed to the
reward) lists the tasks whose rows that reward scores; other rows get 0 from it and are never
shown to it. A row's task is `metadata[i]["task"]`, `DEFAULT_TASK` when it has none. A routed
reward reports `"<reward>/rows"`, and its `"<reward>/mean"` is over its own rows (left out when
a batch has none).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Mapping, Sequence

import numpy as np

from r1jax.rewards import registry
from r1jax.rewards.registry import RewardFn, RewardOutput

log = logging.getLogger(__name__)

DEFAULT_TASK = "math"  # the task of a row whose metadata names none
ROUTE_KEY = "tasks"  # reserved option: the tasks a reward is routed to


def _close(fn: Any) -> None:
  close = getattr(fn, "close", None)
  if callable(close):
    close()


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
  """Runs one reward; on any failure returns zeros and `failed=1` instead of raising."""
  n = len(completions)
  try:
    scores, metrics = _checked_scores(name, fn(completions, answers, metadata), n)
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


@dataclasses.dataclass
class CombinedOutput:
  total: np.ndarray  # float32 [N], the weighted sum
  components: dict[str, np.ndarray]  # name → float32 [N], unweighted
  metrics: dict[str, float]


def _normalize_batch(completions, answers, metadata) -> tuple[list, list, list]:
  completions = list(completions)
  n = len(completions)
  answers = [None] * n if answers is None else list(answers)
  if metadata is None:
    metadata = [{}] * n
  else:  # None-ish rows become {}
    metadata = [m if isinstance(m, Mapping) else {} for m in metadata]
  if len(answers) != n or len(metadata) != n:
    # A caller bug (the "gold answers never reach the reward" failure): loud, not zeros.
    raise ValueError(f"reward batch: {n} completions, {len(answers)} answers, "
                     f"{len(metadata)} metadata rows; they must be aligned one per completion")
  return completions, answers, metadata


class CombinedReward:
  """`weights`: reward name → weight; `options`: reward name → keyword options for `build`."""

  def __init__(self, weights: Mapping[str, float],
               options: Mapping[str, Mapping[str, Any]] | None = None):
    options = dict(options or {})
    if not weights:
      raise ValueError("CombinedReward: weights is empty; name at least one reward")
    for name, weight in weights.items():
      if not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"CombinedReward: weights[{name!r}] = {weight!r} is not a finite number")
    extra = sorted(set(options) - set(weights))
    if extra:
      raise ValueError(f"CombinedReward: options given for {extra}, which have no weight "
                       f"(weights name {sorted(weights)})")
    self.weights = {name: float(w) for name, w in weights.items()}
    self.rewards: dict[str, RewardFn] = {}
    self.tasks: dict[str, frozenset[str]] = {}  # name -> the tasks it scores (absent: every row)
    try:
      for name in self.weights:
        opts = dict(options.get(name, {}))
        if ROUTE_KEY in opts:
          self.tasks[name] = _route(name, opts.pop(ROUTE_KEY))
        self.rewards[name] = registry.build(name, **opts)
    except Exception:
      self.close()
      raise

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any] | None = None,
               metadata: Sequence[Mapping[str, Any]] | None = None) -> CombinedOutput:
    completions, answers, metadata = _normalize_batch(completions, answers, metadata)
    total = np.zeros(len(completions), np.float32)  # [N]
    components, metrics = {}, {}
    row_tasks = [task_of(m) for m in metadata] if self.tasks else []
    for name, fn in self.rewards.items():
      start = time.perf_counter()
      if name in self.tasks:
        rows = [i for i, t in enumerate(row_tasks) if t in self.tasks[name]]
        scores, component_metrics = np.zeros(len(completions), np.float32), {}
        if rows:
          scores[rows], component_metrics = call_safely(
              name, fn, [completions[i] for i in rows], [answers[i] for i in rows],
              [metadata[i] for i in rows])
          component_metrics["mean"] = float(scores[rows].mean())
        component_metrics["rows"] = float(len(rows))
      else:
        scores, component_metrics = call_safely(name, fn, completions, answers, metadata)
        component_metrics["mean"] = float(scores.mean()) if len(scores) else 0.0
      components[name] = scores
      total += np.float32(self.weights[name]) * scores
      metrics.update({f"{name}/{key}": float(value) for key, value in component_metrics.items()})
      metrics[f"{name}/seconds"] = time.perf_counter() - start
    metrics["total/mean"] = float(total.mean()) if len(total) else 0.0
    return CombinedOutput(total=total, components=components, metrics=metrics)

  def close(self) -> None:
    for fn in self.rewards.values():
      _close(fn)


def task_of(meta: Mapping[str, Any]) -> str:
  """A row's task: `metadata["task"]`, or `DEFAULT_TASK` when it names none."""
  task = meta.get("task")
  return task if isinstance(task, str) and task else DEFAULT_TASK


def _route(name: str, tasks: Any) -> frozenset[str]:
  if isinstance(tasks, str) or not isinstance(tasks, (list, tuple, set, frozenset)) or not tasks \
      or not all(isinstance(t, str) and t for t in tasks):
    raise ValueError(f"CombinedReward: options[{name!r}][{ROUTE_KEY!r}] must be a non-empty list "
                     f"of task names, got {tasks!r}")
  return frozenset(tasks)


def build_combined(weights: Mapping[str, float],
                   options: Mapping[str, Mapping[str, Any]] | None = None) -> CombinedReward:
  return CombinedReward(weights, options)


class AccuracyReward:
  """Routes each row to the verifier of its task (see the module docstring)."""

  def __init__(self, routes: Mapping[str, str] | None = None, default_task: str = DEFAULT_TASK,
               task_key: str = "task", options: Mapping[str, Mapping[str, Any]] | None = None):
    self.routes = dict(routes or {})
    self.default_task = default_task
    self.task_key = task_key
    self.options = {name: dict(opts) for name, opts in (options or {}).items()}
    self._built: dict[str, RewardFn] = {}
    # Build the default verifier now, so a bad option fails at startup, not mid-training.
    self._verifier(default_task)

  def _verifier(self, task: str) -> RewardFn | None:
    name = self.routes.get(task, task)
    if name == "accuracy":
      return None  # routing to itself would recurse
    if name not in self._built:
      if name not in registry.available():
        return None
      self._built[name] = registry.build(name, **self.options.get(name, {}))
    return self._built[name]

  def _task(self, meta: Mapping[str, Any]) -> str:
    task = meta.get(self.task_key)
    return task if isinstance(task, str) and task else self.default_task

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any] | None = None,
               metadata: Sequence[Mapping[str, Any]] | None = None) -> RewardOutput:
    completions, answers, metadata = _normalize_batch(completions, answers, metadata)
    scores = np.zeros(len(completions), np.float32)  # [N]
    rows_by_task: dict[str, list[int]] = {}
    for i, meta in enumerate(metadata):
      rows_by_task.setdefault(self._task(meta), []).append(i)
    metrics: dict[str, float] = {"unrouted": 0.0}
    for task, rows in rows_by_task.items():
      try:
        fn = self._verifier(task)
      except Exception:  # noqa: BLE001 — e.g. bad options for a task first seen mid-training
        log.warning("accuracy reward: building the verifier for task %r failed; %d rows score 0",
                    task, len(rows), exc_info=True)
        metrics[f"{task}/failed"] = 1.0
        continue
      if fn is None:
        metrics["unrouted"] += len(rows)
        log.warning("accuracy reward: no verifier for task %r (%d rows score 0); known: %s",
                    task, len(rows), registry.available())
        continue
      task_scores, task_metrics = call_safely(
          task, fn, [completions[i] for i in rows], [answers[i] for i in rows],
          [metadata[i] for i in rows])
      scores[rows] = task_scores
      metrics.update({f"{task}/{key}": value for key, value in task_metrics.items()})
      metrics[f"{task}/rows"] = float(len(rows))
    metrics["mean"] = float(scores.mean()) if len(scores) else 0.0
    return RewardOutput(scores=scores, metrics=metrics)

  def close(self) -> None:
    for fn in self._built.values():
      _close(fn)


@registry.register("accuracy")
def build_accuracy_reward(**options) -> AccuracyReward:
  return AccuracyReward(**options)
