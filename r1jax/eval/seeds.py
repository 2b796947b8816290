"""Mean ± standard error over seeds of several evaluation runs (one pipeline run per seed).

    for s in 0 1 2; do python -m r1jax --config=experiments/r1_pipeline.py:tiny \
        --workdir=runs/r1_seed$s --config.seed=$s; done
    python -m r1jax.eval.seeds runs/r1_seed0 runs/r1_seed1 runs/r1_seed2

Each argument is a pipeline workdir (its `evaluate/eval_results.json` is read), an evaluation
workdir, or an `eval_results.json` itself. The table has one column per checkpoint label, rows
pass@1 and cons@k per benchmark, each "mean ± SE" over the seeds (SE = std with ddof 1 / sqrt(n));
a label or benchmark missing from any run is an error naming the file. Then, for each pair of
labels in PAIRS present in the runs (or `--pairs=before:after,...`), the pass@1 gain of `after` over
`before`: per seed paired by problem (mean ± paired SE), and its mean ± SE over the seeds.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from r1jax import fs
from r1jax.eval.metrics import standard_error
from r1jax.eval.report import EvalResult, load_json, paired_difference

# The paper's comparisons in the R1 pipeline's labels: what each stage should gain over its input.
PAIRS = (("base", "r1-zero"), ("cold-start", "reasoning-rl"), ("student-rl-only", "student-distilled"))


def results_path(path: str) -> str:
  for candidate in (path, fs.join(path, "eval_results.json"), fs.join(path, "evaluate", "eval_results.json")):
    if fs.isfile(candidate):
      return candidate
  raise FileNotFoundError(f"{path}: no eval_results.json here, nor in evaluate/")


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
  return float(np.mean(values)), standard_error(values)


def _indexed(runs: Sequence[Sequence[EvalResult]], names: Sequence[str]):
  """(labels, benchmarks, [{(benchmark, label): result} per run]), in the first run's order; a run
  missing any (benchmark, label) of the first is an error naming it."""
  if not runs:
    raise ValueError("seed runs: none given")
  labels = list(dict.fromkeys(r.label for r in runs[0]))
  benchmarks = list(dict.fromkeys(r.benchmark for r in runs[0]))
  cells: list[dict[tuple[str, str], EvalResult]] = []
  for name, run in zip(names, runs):
    by_key = {(r.benchmark, r.label): r for r in run}
    missing = [k for k in ((b, l) for b in benchmarks for l in labels) if k not in by_key]
    if missing:
      raise ValueError(f"{name}: no result for (benchmark, label) {missing}")
    cells.append(by_key)
  return labels, benchmarks, cells


def seed_table(runs: Sequence[Sequence[EvalResult]], names: Sequence[str]) -> str:
  """Markdown: one column per label (first run's order), "mean ± SE" over runs, in percent."""
  labels, benchmarks, cells = _indexed(runs, names)

  def cell(bench, label, attr):
    vals = [getattr(c[(bench, label)], attr) for c in cells]
    if any(v is None for v in vals):
      return "–"
    m, se = mean_and_stderr(vals)
    return f"{100 * m:.1f} ± {100 * se:.1f}"

  lines = ["| Benchmark (Metric) | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
  for bench in benchmarks:
    k = cells[0][(bench, labels[0])].k
    lines.append(f"| {bench} (pass@1) | " + " | ".join(cell(bench, l, "pass_at_1") for l in labels) + " |")
    lines.append(f"| {bench} (cons@{k}) | " + " | ".join(cell(bench, l, "cons_at_k") for l in labels) + " |")
  return "\n".join(lines) + f"\n\nmean ± standard error over {len(runs)} seeds\n"


def gain_table(runs: Sequence[Sequence[EvalResult]], pairs: Sequence[tuple[str, str]] = PAIRS,
               names: Sequence[str] | None = None) -> str:
  """Markdown: per pair and benchmark, the paired pass@1 gain per seed and its mean ± SE over seeds."""
  labels, benchmarks, cells = _indexed(runs, names or [f"run {i}" for i in range(len(runs))])
  lines = ["| pass@1 gain (paired by problem) | " + " | ".join(f"seed run {i}" for i in range(len(runs)))
           + " | mean ± SE over seeds |", "| --- |" + " ---: |" * (len(runs) + 1)]
  for before, after in pairs:
    if before not in labels or after not in labels:
      continue
    for bench in benchmarks:
      diffs = [paired_difference(c[(bench, before)], c[(bench, after)]) for c in cells]
      m, se = mean_and_stderr([d for d, _ in diffs])
      lines.append(f"| {bench}: {after} − {before} | " + " | ".join(f"{100 * d:+.1f} ± {100 * e:.1f}" for d, e in diffs)
                   + f" | {100 * m:+.1f} ± {100 * se:.1f} |")
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
  pairs = PAIRS
  args = []
  for a in argv:
    if a.startswith("--pairs="):
      pairs = [tuple(p.split(":", 1)) for p in a[len("--pairs="):].split(",") if p]
    else:
      args.append(a)
  if not args:
    print(__doc__, file=sys.stderr)
    return 2
  paths = [results_path(p) for p in args]
  runs = [load_json(p) for p in paths]
  print(seed_table(runs, paths), end="")
  print()
  print(gain_table(runs, pairs, paths), end="")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
