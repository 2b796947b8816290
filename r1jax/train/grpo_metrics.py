"""The GRPO stage's metrics contract, and its guard against non-finite updates.

One row per rollout, logged at the step of its last update; every metric in one namespace and
each quantity once:
  reward/   mean (the combined reward of every sampled row), <reward>/<stat> per component
  rollout/  the trained rows: advantage and reward spread, zero-std groups, response lengths,
            truncation, dynamic sampling, reflection words, sampler throughput and compiles
  train/    the minibatch updates: loss, policy loss, KL, clip fractions, ratio extremes,
            entropy, grad norm, skipped (non-finite) updates
  time/     generate, reward, ref, update, step (seconds)
  eval/     held-out pass@1 (± SE), cons@k, format, length
Besides those, a row has its indices: step (minibatch updates so far), rollout and time.
"""
from __future__ import annotations

import io
import logging
from typing import Mapping, Sequence

import numpy as np

from r1jax import fs

log = logging.getLogger(__name__)

# Per-minibatch update metrics that are extremes, not means, over a rollout's minibatches.
_MAX_METRICS = ("ratio_max", "kl_max")
_MIN_METRICS = ("ratio_min",)
_SUM_METRICS = ("skipped_nonfinite",)
# grpo_loss statistics the rollout already logs over all its rows (rollout/advantage_*,
# rollout/response_length/mean, rollout/truncated_fraction): not logged a second time.
_ROLLOUT_LEVEL = ("advantage_mean", "advantage_std", "advantage_min", "advantage_max", "frac_zero_advantage",
                  "completion_length_mean", "frac_truncated")
# What the progress bar shows: label -> metric.
PROGRESS_KEYS = {"reward": "reward/mean", "accuracy": "reward/accuracy/mean",
                 "len": "rollout/response_length/mean", "kl": "train/kl_mean", "s": "time/step"}


def aggregate_update_metrics(step_metrics: Sequence[Mapping[str, float]]) -> dict:
  """Per-minibatch metric dicts -> one rollout row: extremes for min/max metrics, sums for
  counts, means (over the finite values; a non-finite one makes the mean non-finite) otherwise."""
  out = {}
  for k in step_metrics[0]:
    vals = np.asarray([float(m[k]) for m in step_metrics])
    if k in _MAX_METRICS:
      out[k] = float(vals.max())
    elif k in _MIN_METRICS:
      out[k] = float(vals.min())
    elif k in _SUM_METRICS:
      out[k] = float(vals.sum())
    else:
      out[k] = float(vals.mean())
  return out


def train_metrics(step_metrics: Sequence[Mapping[str, float]]) -> dict:
  """The `train/` part of a rollout's row from its minibatch updates' metrics (host numbers)."""
  agg = aggregate_update_metrics(step_metrics)
  return {f"train/{k}": v for k, v in agg.items() if k not in _ROLLOUT_LEVEL}


def reward_metrics(metrics: Mapping[str, float]) -> dict:
  """A `CombinedReward`'s metrics as the `reward/` part of the row (its total mean is reward/mean)."""
  out = {}
  for k, v in metrics.items():
    out["reward/mean" if k == "total/mean" else f"reward/{k}"] = v
  return out


def namespaced(prefix: str, metrics: Mapping[str, float]) -> dict:
  return {f"{prefix}/{k}": v for k, v in metrics.items()}


class NonFiniteGuard:
  """Counts skipped (non-finite) updates, saves each offending minibatch, stops after N in a row."""

  def __init__(self, directory: str, max_in_a_row: int, *, streak: int = 0, total: int = 0, enabled: bool = True):
    self.directory, self.max_in_a_row, self.enabled = directory, int(max_in_a_row), enabled
    self.streak, self.total = int(streak), int(total)

  def check(self, step: int, skipped: bool, minibatch: dict | None) -> None:
    """`minibatch` (numpy rows of the update) is needed only when `skipped`."""
    if not skipped:
      self.streak = 0
      return
    self.streak += 1
    self.total += 1
    path = fs.join(self.directory, f"step_{step}.npz")
    if self.enabled:
      buf = io.BytesIO()
      np.savez(buf, **minibatch)
      fs.write_bytes(path, buf.getvalue())
    log.warning("step %d: non-finite loss or gradient, update skipped (%d in a row); minibatch saved to %s",
                step, self.streak, path)
    if self.max_in_a_row and self.streak >= self.max_in_a_row:
      raise FloatingPointError(
          f"GRPO stopped at step {step}: {self.streak} non-finite updates in a row "
          f"(train.max_nonfinite_updates={self.max_in_a_row}); the minibatches are in {self.directory}")
