"""Rule rewards graded once across processes, not once per process.

With several JAX processes every process holds the whole rollout's text (the sampler's output is a
global array read back on every host). `ShardedReward` has each process grade a contiguous slice of
the rows with the rule rewards (math, code, format, language: pure functions of text, the slow part
of a rollout on a pod) and all-gathers the scores, so every process ends with the same global
rewards (group ids stay global, advantages are computed identically everywhere). Components that
run on devices (learned reward models, whose forward pass is a collective) score every row on
every process. One process: exactly `CombinedReward`.

Metrics of the slices are combined exactly where they can be: counts summed, means weighted by the
rows behind them, a component's `mean` recomputed from the gathered scores. A failure on any process is raised on every process (never a hang in the gather).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from r1jax.parallel.multihost import allgather_objects, allgather_rows
from r1jax.rewards.combine import CombinedOutput, CombinedReward, _normalize_batch
from r1jax.train.rollout import is_count


def slice_bounds(n: int, index: int, count: int) -> tuple[int, int]:
  """Process `index` of `count` grades rows [lo, hi) of n (contiguous, sizes differ by <= 1)."""
  return index * n // count, (index + 1) * n // count


class ShardedReward:
  """`CombinedReward` whose rule components are graded one slice per process."""

  def __init__(self, combined: CombinedReward, *, process: Optional[tuple[int, int]] = None,
               gather_rows: Callable = allgather_rows, gather_objects: Callable = allgather_objects):
    """`process`: (index, count), default JAX's; `gather_*`: the collectives (tests pass others)."""
    self.combined = combined
    self._process, self._gather_rows, self._gather_objects = process, gather_rows, gather_objects

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any] | None = None,
               metadata: Sequence[Mapping[str, Any]] | None = None) -> CombinedOutput:
    index, count = self._process or (jax.process_index(), jax.process_count())
    if count == 1:
      return self.combined(completions, answers, metadata)
    completions, answers, metadata = _normalize_batch(completions, answers, metadata)
    n = len(completions)
    bounds = [slice_bounds(n, p, count) for p in range(count)]
    lo, hi = bounds[index]
    local = [name for name in self.combined.rewards if not self.combined.runs_on_devices(name)]
    mine, error = {}, None
    try:
      for name in local:
        mine[name] = self.combined.score_component(name, completions[lo:hi], answers[lo:hi], metadata[lo:hi])
    except Exception as e:  # noqa: BLE001 — re-raised below, on every process
      error = f"{type(e).__name__}: {e}"
    width = -(-n // count)  # the longest slice; shorter ones are padded for the gather
    padded = np.zeros((len(local), width), np.float32)
    if error is None:
      for i, name in enumerate(local):
        padded[i, :hi - lo] = mine[name][0]
    gathered = self._gather_rows(padded[None])  # [P, components, width]
    reports = self._gather_objects({"error": error, "metrics": {k: v[1] for k, v in mine.items()}})
    failed = [f"process {p}: {r['error']}" for p, r in enumerate(reports) if r["error"]]
    if failed:
      raise RuntimeError("reward grading failed on " + "; ".join(failed))
    scored = {}
    for i, name in enumerate(local):
      scores = np.concatenate([gathered[p, i, :b - a] for p, (a, b) in enumerate(bounds)])
      metrics = _merge_slices([r["metrics"][name] for r in reports], bounds)
      if "rows" not in metrics:  # routed components report their own mean over their rows
        metrics["mean"] = float(scores.mean()) if n else 0.0
      scored[name] = (scores.astype(np.float32), metrics)
    for name in self.combined.rewards:
      if name not in scored:  # on devices: every process scores every row, together
        scored[name] = self.combined.score_component(name, completions, answers, metadata)
    return self.combined.combine(scored, n)

  def close(self) -> None:
    self.combined.close()


def _merge_slices(metrics: Sequence[Mapping[str, float]], bounds: Sequence[tuple[int, int]]) -> dict[str, float]:
  """Counts summed; other metrics weighted by the rows behind them, so a mean over rows comes out
  exact; seconds: the slowest slice (they ran in parallel)."""
  out = {}
  for key in sorted({k for m in metrics for k in m}):
    held = [(float(m[key]), _rows_behind(m, key, b - a)) for m, (a, b) in zip(metrics, bounds) if key in m]
    if is_count(key):
      out[key] = float(sum(v for v, _ in held))
    elif key == "seconds" or key.endswith("/seconds"):
      out[key] = max(v for v, _ in held)
    else:
      total = sum(w for _, w in held)
      out[key] = sum(v * w for v, w in held) / total if total else float(np.mean([v for v, _ in held]))
  return out


def _rows_behind(m: Mapping[str, float], key: str, slice_rows: int) -> float:
  """The rows a metric averages over: its sibling "<prefix>/rows" (a task of the accuracy reward),
  else the component's "rows" (a routed component), else the whole slice."""
  prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
  return float(m.get(prefix + "rows", m.get("rows", slice_rows)))
