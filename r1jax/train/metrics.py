"""Run metrics: a JSONL log and TensorBoard event files in the workdir, and a tqdm progress bar.

TensorBoard events are written with tensorboard's own writer (no TensorFlow needed).
"""
from __future__ import annotations

import json
import logging
import math
import time
from typing import Mapping, Optional

import numpy as np

from r1jax import fs


log = logging.getLogger(__name__)


def _scalar(v) -> Optional[float]:
  """A finite float, or None (for display: the progress bar)."""
  f = _number(v)
  return f if f is not None and math.isfinite(f) else None


def _number(v) -> Optional[float]:
  """Any scalar as a float, NaN and inf included; None if it is not one number."""
  try:
    return float(np.asarray(v))
  except (TypeError, ValueError):
    return None


class MetricsWriter:
  """`write(step, metrics)` appends one JSON line and TB scalars. Only process 0 writes.

  A non-finite value is written as it is (JSON `NaN` / `Infinity`, which Python, pandas and the
  plots read back; a NaN TensorBoard scalar) and logged as a warning: a diverging run must show.
  A value that is not a number or a string is an error naming the key.
  """

  def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True, prefix: str = ""):
    self.path = fs.join(workdir, "metrics.jsonl")
    self.enabled = enabled
    self.prefix = prefix
    self._tb = None
    if enabled:
      fs.makedirs(workdir)
      if tensorboard:  # tensorboard's own gfile: local paths, and URLs through fsspec
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._tb = EventFileWriter(fs.join(workdir, "tb"))

  def write(self, step: int, metrics: Mapping[str, object]) -> dict:
    row = {"step": int(step), "time": time.time()}
    nonfinite = []
    for k, v in metrics.items():
      if isinstance(v, str):
        row[self.prefix + k] = v
      elif v is not None:
        s = _number(v)
        if s is None:
          raise TypeError(f"MetricsWriter: metric {k!r} = {v!r} is not a number or a string")
        row[self.prefix + k] = s
        if not math.isfinite(s):
          nonfinite.append(self.prefix + k)
    if nonfinite:
      log.warning("step %d: non-finite metrics %s", int(step), ", ".join(nonfinite))
    if not self.enabled:
      return row
    fs.append_text(self.path, json.dumps(row) + "\n")
    if self._tb is not None:
      from tensorboard.compat.proto.event_pb2 import Event
      from tensorboard.compat.proto.summary_pb2 import Summary

      vals = [Summary.Value(tag=k, simple_value=v) for k, v in row.items()
              if k not in ("step", "time") and isinstance(v, float)]
      self._tb.add_event(Event(wall_time=row["time"], step=int(step), summary=Summary(value=vals)))
    return row

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()
      self._tb = None


class Progress:
  """A tqdm bar showing a few chosen metrics; silent when disabled or not on process 0.
  `keys`: {label: metric key}, or metric keys (labelled by their last part)."""

  def __init__(self, total: int, initial: int = 0, desc: str = "", keys=(), enabled: bool = True):
    self.keys = dict(keys) if isinstance(keys, Mapping) else {k.rsplit("/", 1)[-1]: k for k in keys}
    self.bar = None
    if enabled:
      from tqdm.auto import tqdm

      self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=True)

  def update(self, metrics: Mapping[str, object], n: int = 1):
    if self.bar is None:
      return
    shown = {label: f"{_scalar(metrics[k]):.4g}" for label, k in self.keys.items()
             if k in metrics and _scalar(metrics[k]) is not None}
    if shown:
      self.bar.set_postfix(shown, refresh=False)
    self.bar.update(n)

  def close(self):
    if self.bar is not None:
      self.bar.close()
