"""Weighted sum of registered rewards, and an `accuracy` reward that routes rows by task.

`CombinedReward({"accuracy": 1.0, "format": 1.0}, options={"accuracy": {...}})` builds each
named reward once and, per batch, returns the weighted total (the paper sums accuracy, format and
language rewards with weight 1), every component's scores, and metrics named
`"<reward>/<metric>"`. A component that raises, or returns scores of the wrong shape, contributes
zeros, logs a warning and counts `"<reward>/failed"`; the trainer never sees the exception,
except `registry.RewardUnavailableError` (a reward that cannot grade at all), which propagates.
Non-finite scores are zeroed and counted in `"<reward>/nonfinite"`.

Both classes route rows by task through `routing.Routes` (see routing.py):

- `options[name]["tasks"]` (a reserved key, not passed to the reward) lists the tasks whose rows
  that component scores; other rows get 0 from it and are never shown to it. A routed component
  reports `"<reward>/rows"`, and its `"<reward>/mean"` is over its own rows (left out when a
  batch has none).
- The `accuracy` reward grades each row with the reward named by its task (`metadata[i][task_key]`,
  "task"; rows without one are `default_task`, "math"): "math" → the math reward, "code" → the
  code reward, "countdown" → the countdown verifier (verifiers.py). `routes` adds entries to that
  table (`{"gsm8k": "math"}`). Rows of a task with no registered reward score 0 and are counted
  in `unrouted`; metrics are per task (`"<task>/rows"`, `"<task>/<metric>"`).
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
from r1jax.rewards.routing import DEFAULT_TASK, ROUTE_KEY, TASK_KEY, Routes, call_safely, grade_rows

log = logging.getLogger(__name__)


def _close(fn: Any) -> None:
  close = getattr(fn, "close", None)
  if callable(close):
    close()


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
    self.routes: dict[str, Routes] = {}  # name -> the tasks routed to it (absent: every row)
    try:
      for name in self.weights:
        opts = dict(options.get(name, {}))
        if ROUTE_KEY in opts:
          self.routes[name] = Routes.to_reward(name, opts.pop(ROUTE_KEY))
        self.rewards[name] = registry.build(name, **opts)
    except Exception:
      self.close()
      raise

  def score_component(self, name: str, completions: Sequence[Any], answers: Sequence[Any] | None = None,
                      metadata: Sequence[Mapping[str, Any]] | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """One component's unweighted scores [N] and its metrics (unprefixed, "seconds" included)."""
    completions, answers, metadata = _normalize_batch(completions, answers, metadata)
    fn, start = self.rewards[name], time.perf_counter()
    if name in self.routes:
      rows = self.routes[name].rows_for(name, metadata)
      scores, component_metrics = grade_rows(name, fn, rows, completions, answers, metadata)
    else:
      scores, component_metrics = call_safely(name, fn, completions, answers, metadata)
      component_metrics["mean"] = float(scores.mean()) if len(scores) else 0.0
    component_metrics = {key: float(value) for key, value in component_metrics.items()}
    component_metrics["seconds"] = time.perf_counter() - start
    return scores, component_metrics

  def runs_on_devices(self, name: str) -> bool:
    """Whether component `name` computes on accelerators (a learned reward model): with several
    processes its forward pass is a collective, so every process must score every row."""
    return bool(getattr(self.rewards[name], "on_devices", False))

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any] | None = None,
               metadata: Sequence[Mapping[str, Any]] | None = None) -> CombinedOutput:
    completions, answers, metadata = _normalize_batch(completions, answers, metadata)
    return self.combine({name: self.score_component(name, completions, answers, metadata)
                         for name in self.rewards}, len(completions))

  def combine(self, scored: Mapping[str, tuple[np.ndarray, Mapping[str, float]]], n: int) -> CombinedOutput:
    """The weighted total of the components' (scores, metrics), with prefixed metrics."""
    total = np.zeros(n, np.float32)  # [N]
    components, metrics = {}, {}
    for name in self.rewards:
      scores, component_metrics = scored[name]
      components[name] = scores
      total += np.float32(self.weights[name]) * scores
      metrics.update({f"{name}/{key}": float(value) for key, value in component_metrics.items()})
    metrics["total/mean"] = float(total.mean()) if len(total) else 0.0
    return CombinedOutput(total=total, components=components, metrics=metrics)

  def close(self) -> None:
    for fn in self.rewards.values():
      _close(fn)


class AccuracyReward:
  """Routes each row to the reward named by its task (see the module docstring)."""

  def __init__(self, routes: Mapping[str, str] | None = None, default_task: str = DEFAULT_TASK,
               task_key: str = TASK_KEY, options: Mapping[str, Mapping[str, Any]] | None = None):
    self.routes = Routes(routes, by_name=True, task_key=task_key, default_task=default_task)
    self.options = {name: dict(opts) for name, opts in (options or {}).items()}
    self._built: dict[str, RewardFn] = {}
    # Build the default verifier now, so a bad option fails at startup, not mid-training.
    self._verifier(default_task)

  def _verifier(self, task: str) -> RewardFn | None:
    name = self.routes.target(task)
    if name is None or name == "accuracy":
      return None  # routing to itself would recurse
    if name not in self._built:
      if name not in registry.available():
        return None
      self._built[name] = registry.build(name, **self.options.get(name, {}))
    return self._built[name]

  def prepare(self, tasks: Sequence[str]) -> None:
    """Builds the reward of each task now: evaluation then fails at start, naming the task, when
    one has no reward or its reward cannot be built (no sandbox), not with zero scores later."""
    for task in tasks:
      if self._verifier(task) is None:
        raise KeyError(f"accuracy reward: no reward grades task {task!r} (it routes to "
                       f"{self.routes.target(task)!r}); known rewards: {registry.available()}")

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any] | None = None,
               metadata: Sequence[Mapping[str, Any]] | None = None) -> RewardOutput:
    completions, answers, metadata = _normalize_batch(completions, answers, metadata)
    scores = np.zeros(len(completions), np.float32)  # [N]
    metrics: dict[str, float] = {"unrouted": 0.0}
    for task, rows in self.routes.rows_by_task(metadata).items():
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
      task_scores, task_metrics = grade_rows(task, fn, rows, completions, answers, metadata)
      scores[rows] = task_scores[rows]
      metrics.update({f"{task}/{key}": value for key, value in task_metrics.items()})
    metrics["mean"] = float(scores.mean()) if len(scores) else 0.0
    return RewardOutput(scores=scores, metrics=metrics)

  def close(self) -> None:
    for fn in self._built.values():
      _close(fn)


@registry.register("accuracy")
def build_accuracy_reward(**options) -> AccuracyReward:
  return AccuracyReward(**options)
