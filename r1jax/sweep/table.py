"""The sweep's results: `sweep.md` (Markdown table), `sweep.csv` and `sweep.png` (one panel per
metric: each run's curve vs step, or a bar per run for end-of-run numbers) in the sweep workdir.

A run's metrics are read from its directory: `metrics.jsonl` (keys as logged) and, for pipelines,
each stage's `<stage>/metrics.jsonl` (keys prefixed by the stage name: "reasoning_rl/eval/pass@1");
an evaluation table `eval_results.json` (here or in a stage directory, e.g. a pipeline's
`evaluate/`) adds "<label>/pass@1" and "<label>/cons@<k>" ("<label>/<benchmark>/pass@1" when it
holds several benchmarks). A metric's value is the last one logged; a missing one is left empty.
Metric names in the sweep file may be globs ("*/pass@1").
"""
from __future__ import annotations

import csv
import logging
import math
import os
from typing import Any, Sequence

from r1jax.sweep.runner import run_dir, status
from r1jax.sweep.spec import Sweep, flag_value

log = logging.getLogger(__name__)

Series = dict[str, list[tuple[float, float]]]  # metric -> [(step, value)] (step NaN: no step)


def _number(v: Any) -> float | None:
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    return None
  return float(v)


def _jsonl(path: str, prefix: str, series: Series) -> None:
  from r1jax.eval.plots import read_jsonl

  for row in read_jsonl(path):
    step = _number(row.get("step"))
    for k, v in row.items():
      x = _number(v)
      if k in ("step", "time") or x is None:
        continue
      series.setdefault(prefix + k, []).append((math.nan if step is None else step, x))


def _eval_results(path: str, series: Series) -> None:
  from r1jax.eval.report import load_json

  try:
    results = load_json(path)
  except (OSError, ValueError) as e:
    log.warning("sweep: skipping %s: %s", path, e)
    return
  several = len({r.benchmark for r in results}) > 1
  for r in results:
    base = f"{r.label}/{r.benchmark}" if several else r.label
    series.setdefault(f"{base}/pass@1", []).append((math.nan, r.pass_at_1))
    if r.cons_at_k is not None:
      series.setdefault(f"{base}/cons@{r.k}", []).append((math.nan, r.cons_at_k))


def read_run(directory: str) -> Series:
  """Every metric of one run directory (see the module docstring)."""
  series: Series = {}
  if not os.path.isdir(directory):
    return series
  subdirs = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
  for sub, prefix in [("", "")] + [(s, f"{s}/") for s in subdirs]:
    path = os.path.join(directory, sub, "metrics.jsonl")
    if os.path.isfile(path):
      _jsonl(path, prefix, series)
  for sub in [""] + subdirs:
    path = os.path.join(directory, sub, "eval_results.json")
    if os.path.isfile(path):
      _eval_results(path, series)
  return series


def chosen_metrics(patterns: Sequence[str], runs: Sequence[Series]) -> list[str]:
  """The sweep's metric names, globs expanded over the keys the runs logged (sorted)."""
  import fnmatch

  known = sorted({k for s in runs for k in s})
  out: list[str] = []
  for p in patterns:
    hits = [k for k in known if fnmatch.fnmatchcase(k, p)] if any(c in p for c in "*?[") else [p]
    out += [k for k in hits if k not in out]
  return out


def collect(sweep: Sweep, workdir: str) -> tuple[list[str], list[dict], dict[str, Series]]:
  """(columns, rows, series by run name): one row per run, values None where missing."""
  series = {r.name: read_run(run_dir(workdir, r)) for r in sweep.runs}
  metrics = chosen_metrics(sweep.metrics, list(series.values()))
  columns = ["run", *sweep.keys, "status", "wall_s", *metrics]
  rows = []
  for r in sweep.runs:
    state, marker = status(run_dir(workdir, r))
    row = {"run": r.name, **{k: flag_value(v) for k, v in r.swept}, "status": state,
           "wall_s": (marker or {}).get("wall_s")}
    for m in metrics:
      points = series[r.name].get(m)
      row[m] = points[-1][1] if points else None
    rows.append(row)
  return columns, rows, series


def _cell(v: Any, markdown: bool) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return f"{v:.4g}" if markdown else repr(v)
  return str(v).replace("|", "\\|") if markdown else str(v)


def write_markdown(columns, rows, path: str, title: str) -> None:
  right = set(columns[columns.index("wall_s"):])
  lines = [f"# Sweep {title}", "",
           "| " + " | ".join(columns) + " |",
           "| " + " | ".join("---:" if c in right else "---" for c in columns) + " |"]
  for row in rows:
    cells = [_cell(round(row[c], 1) if c == "wall_s" and row[c] is not None else row[c], True) for c in columns]
    lines.append("| " + " | ".join(cells) + " |")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def write_csv(columns, rows, path: str) -> None:
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(columns)
    for row in rows:
      w.writerow([_cell(row[c], False) for c in columns])


def write_plot(metrics: Sequence[str], sweep: Sweep, series: dict[str, Series], path: str) -> bool:
  """One panel per metric; False (nothing written) when there are no metrics."""
  if not metrics:
    return False
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  ncols = min(3, len(metrics))
  nrows = -(-len(metrics) // ncols)
  fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows), layout="constrained")
  FigureCanvasAgg(fig)
  names = [r.name for r in sweep.runs]
  legend_done = False
  for i, m in enumerate(metrics):
    ax = fig.add_subplot(nrows, ncols, i + 1)
    ax.set_title(m, fontsize=9)
    runs = [(n, series[n].get(m) or []) for n in names]
    curves = any(not math.isnan(s) for _, pts in runs for s, _ in pts)
    if curves:
      for n, pts in runs:
        pts = [(s, v) for s, v in pts if not math.isnan(s)]
        if pts:
          ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", markersize=2, linewidth=1, label=n)
      ax.set_xlabel("step", fontsize=8)
      if not legend_done:
        ax.legend(fontsize=6)
        legend_done = True
    else:
      last = [(n, pts[-1][1]) for n, pts in runs if pts]
      if last:
        ax.bar(range(len(names)), [dict(last).get(n, math.nan) for n in names])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=6)
      else:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  fig.savefig(path, dpi=110)
  return True


def write_tables(sweep: Sweep, workdir: str) -> dict[str, str]:
  """Writes sweep.md, sweep.csv and sweep.png under `workdir`; returns their paths."""
  os.makedirs(workdir, exist_ok=True)
  columns, rows, series = collect(sweep, workdir)
  paths = {"md": os.path.join(workdir, "sweep.md"), "csv": os.path.join(workdir, "sweep.csv"),
           "png": os.path.join(workdir, "sweep.png")}
  write_markdown(columns, rows, paths["md"], sweep.name)
  write_csv(columns, rows, paths["csv"])
  metrics = columns[columns.index("wall_s") + 1:]
  if not write_plot(metrics, sweep, series, paths["png"]):
    del paths["png"]
  return paths
