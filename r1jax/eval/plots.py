"""PNG training curves at the end of an RL stage: held-out accuracy vs step (the paper's Fig. 2),
mean response length vs step (Fig. 3) and reflection-word frequency vs step (one line per word).

Input is the metric log: JSONL rows with a "step" key (see `r1jax.train.metrics`). Which keys
are plotted is chosen by glob patterns, so one figure can hold several benchmarks
("eval/aime/pass@1", "eval/math/pass@1"). A figure whose keys are absent is skipped with a log
line, never an error. Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no
display, no global backend switch).
"""
from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from r1jax import fs

log = logging.getLogger(__name__)

ACCURACY_PATTERNS = ("eval/*pass@1", "eval/*accuracy", "heldout/*", "held_out/*")
LENGTH_PATTERNS = ("response_length/mean", "*/response_length/mean", "completion_length/mean",
                   "*mean_response_length")
REFLECTION_PREFIX = "rollout/reflection/"  # the GRPO row's reflection words (train.grpo_metrics)
_MAX_LOGGED_BAD_LINES = 10


def read_jsonl(path: str | os.PathLike, strict: bool = False) -> list[dict]:
  """Rows of a JSONL file. Lines that are not a JSON object are skipped (a torn last line after
  a kill is normal) with a warning naming file:line, or raise ValueError when `strict`."""
  path = os.fspath(path)
  rows: list[dict] = []
  bad: list[int] = []
  with fs.open_file(path, "r") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
        error = None if isinstance(row, dict) else f"expected a JSON object, got " \
                                                   f"{type(row).__name__}"
      except json.JSONDecodeError as e:
        error = f"not valid JSON ({e.msg})"
      if error is None:
        rows.append(row)
        continue
      if strict:
        raise ValueError(f"{path}:{lineno}: {error}")
      bad.append(lineno)
      if len(bad) <= _MAX_LOGGED_BAD_LINES:
        log.warning("%s:%d: skipping malformed line: %s", path, lineno, error)
  if bad:
    log.warning("%s: skipped %d malformed line(s) (lines %s%s), kept %d", path, len(bad),
                ", ".join(map(str, bad[:_MAX_LOGGED_BAD_LINES])),
                ", …" if len(bad) > _MAX_LOGGED_BAD_LINES else "", len(rows))
  return rows


def _number(value: Any) -> float | None:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    return None
  f = float(value)
  return f if math.isfinite(f) else None


def series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of `key`, sorted by step, from rows with a numeric step and a finite value.

  When several rows share a step, the last one wins (a resumed run re-logs its last steps).
  """
  by_step: dict[float, float] = {}
  for row in records:
    step, value = _number(row.get("step")), _number(row.get(key))
    if step is not None and value is not None:
      by_step[step] = value
  steps = np.array(sorted(by_step), dtype=np.float64)
  return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def matching_keys(records: Sequence[Mapping[str, Any]], patterns: Sequence[str]) -> list[str]:
  """Metric keys matching any glob pattern, in order of first appearance ("step" excluded)."""
  keys: dict[str, None] = {}
  for row in records:
    for key, value in row.items():
      if key != "step" and _number(value) is not None and \
          any(fnmatch.fnmatchcase(key, p) for p in patterns):
        keys.setdefault(key)
  return list(keys)


def _line_plot(lines: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str, title: str,
               ylabel: str, dpi: int, errors: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> str:
  """One line per entry; `errors[name]` = (steps, standard errors) draws +-1 SE bars where known."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(6.4, 4.0), layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for name, (steps, values) in lines.items():
    line, = ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=name)
    if errors and name in errors:
      err_steps, err = errors[name]
      at = np.isin(steps, err_steps)
      by_step = dict(zip(err_steps.tolist(), err.tolist()))
      ax.errorbar(steps[at], values[at], yerr=[by_step[x] for x in steps[at].tolist()], fmt="none",
                  ecolor=line.get_color(), capsize=3, alpha=0.7)
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  if len(lines) > 1:
    ax.legend(fontsize="small")
  with fs.writing(path, "wb") as f:  # a bucket too
    fig.savefig(f, dpi=dpi, format="png")
  return path


def plot_training_curves(records: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, *,
                         accuracy_patterns: Sequence[str] = ACCURACY_PATTERNS,
                         length_patterns: Sequence[str] = LENGTH_PATTERNS,
                         reflection_prefix: str = REFLECTION_PREFIX,
                         title_prefix: str = "", dpi: int = 100) -> list[str]:
  """Writes the stage's PNGs into `out_dir` and returns their paths.

  heldout_accuracy.png: every key matching `accuracy_patterns` (with +-1 standard-error bars from
  `<key>_se` where logged, e.g. "eval/pass@1_se"); response_length.png: every key
  matching `length_patterns`; reflection_words.png: every key `{reflection_prefix}{word}`
  (as logged by `metrics.reflection_metrics`), one line per word. Rows without a numeric "step"
  are ignored (counted in a log line); a figure with no data is skipped with a log line.
  """
  out_dir = os.fspath(out_dir)
  fs.makedirs(out_dir)
  no_step = sum(_number(row.get("step")) is None for row in records)
  if no_step:
    log.warning("plot_training_curves: %d of %d rows have no numeric 'step'; ignored", no_step,
                len(records))
  prefix = f"{title_prefix}: " if title_prefix else ""
  figures = [
      ("heldout_accuracy.png", f"{prefix}held-out accuracy", "accuracy",
       list(accuracy_patterns), ""),
      ("response_length.png", f"{prefix}mean response length", "tokens per response",
       list(length_patterns), ""),
      ("reflection_words.png", f"{prefix}reflection words", "occurrences per 1k words",
       [reflection_prefix + "*"], reflection_prefix),
  ]
  paths = []
  for filename, title, ylabel, patterns, strip in figures:
    lines, errors = {}, {}
    for key in matching_keys(records, patterns):
      steps, values = series(records, key)
      if len(steps):
        lines[key[len(strip):]] = (steps, values)
        se_steps, se = series(records, key + "_se")
        if len(se_steps):
          errors[key[len(strip):]] = (se_steps, se)
    if not lines:
      log.info("plot_training_curves: no rows with a step and a key matching %s; skipped %s",
               patterns, filename)
      continue
    paths.append(_line_plot(lines, fs.join(out_dir, filename), title, ylabel, dpi, errors))
  return paths


def plot_jsonl(path: str | os.PathLike, out_dir: str | os.PathLike, **options: Any) -> list[str]:
  """`plot_training_curves(read_jsonl(path), out_dir, **options)`."""
  return plot_training_curves(read_jsonl(path), out_dir, **options)
