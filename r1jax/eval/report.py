"""Evaluation results: one `EvalResult` per (benchmark, checkpoint/stage), JSON files, and a
Markdown table with one column per checkpoint/stage, like the paper's Table 3.

Metrics are stored as fractions in [0, 1] and shown in the table as percentages with one
decimal; a metric a checkpoint was not evaluated on shows as "–".
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from r1jax import fs
from r1jax.eval import metrics

FORMAT = "r1jax.eval/v1"
MISSING = "–"
TABLE_METRICS = ("pass@1", "cons@k", "format", "mean length")  # and pass@<k>


@dataclasses.dataclass
class EvalResult:
  """Scores of one checkpoint/stage (`label`) on one benchmark.

  pass_at_1: mean correctness over `k` samples per problem; pass_at_1_stderr: its standard error
  over problems; cons_at_k: majority vote over those k; pass_at_k: {k': unbiased pass@k'};
  mean_length: mean response length in tokens.
  """
  benchmark: str
  label: str
  pass_at_1: float
  num_problems: int
  k: int
  cons_at_k: float | None = None
  pass_at_k: dict[int, float] = dataclasses.field(default_factory=dict)
  mean_length: float | None = None
  temperature: float | None = 0.6
  top_p: float | None = 0.95
  max_new_tokens: int | None = None
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  pass_at_1_stderr: float | None = None
  format_rate: float | None = None  # fraction of samples in the checkpoint's output format
  per_problem: list[float] | None = None  # pass@1 of each problem, in benchmark order (paired tests)
  cons_at_k_stderr: float | None = None

  def __post_init__(self):
    where = f"EvalResult({self.benchmark!r}, {self.label!r})"
    for name in ("benchmark", "label"):
      if not isinstance(getattr(self, name), str) or not getattr(self, name):
        raise ValueError(f"{where}: {name} must be a non-empty string, got "
                         f"{getattr(self, name)!r}")
    for name in ("num_problems", "k"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{where}: {name} must be an int, got {value!r}")
      setattr(self, name, int(value))
    if self.num_problems < 0 or self.k < 1:
      raise ValueError(f"{where}: need num_problems >= 0 and k >= 1, got "
                       f"num_problems={self.num_problems}, k={self.k}")
    self.pass_at_1 = _fraction(where, "pass_at_1", self.pass_at_1)
    if self.per_problem is not None:
      self.per_problem = [_fraction(where, f"per_problem[{i}]", v) for i, v in enumerate(self.per_problem)]
    for name in ("pass_at_1_stderr", "format_rate", "cons_at_k_stderr"):
      if getattr(self, name) is not None:
        setattr(self, name, _fraction(where, name, getattr(self, name)))
    if self.cons_at_k is not None:
      self.cons_at_k = _fraction(where, "cons_at_k", self.cons_at_k)
    pass_at_k = {}
    for key, value in dict(self.pass_at_k).items():
      kk = _k_key(where, key)
      if kk > self.k:
        raise ValueError(f"{where}: pass_at_k has k={kk} > the k={self.k} samples drawn")
      pass_at_k[kk] = _fraction(where, f"pass_at_k[{kk}]", value)
    self.pass_at_k = dict(sorted(pass_at_k.items()))
    if self.mean_length is not None:
      self.mean_length = float(self.mean_length)

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready dict (pass_at_k keys become strings, as JSON requires)."""
    out = dataclasses.asdict(self)
    out["pass_at_k"] = {str(k): v for k, v in self.pass_at_k.items()}
    return out

  @classmethod
  def from_dict(cls, data: Mapping[str, Any], where: str = "EvalResult") -> "EvalResult":
    """Inverse of `to_dict`; errors name `where` and the missing or unknown field."""
    if not isinstance(data, Mapping):
      raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
      raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    required = [name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
      raise ValueError(f"{where}: missing field(s) {missing}")
    try:
      return cls(**data)
    except (TypeError, ValueError) as e:
      raise ValueError(f"{where}: {e}") from None


def _fraction(where: str, name: str, value: Any) -> float:
  try:
    f = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{where}: {name} must be a number, got {value!r}") from None
  if not (math.isfinite(f) and 0.0 <= f <= 1.0):
    raise ValueError(f"{where}: {name} must be a fraction in [0, 1], got {f}")
  return f


def _k_key(where: str, key: Any) -> int:
  text = str(key).removeprefix("pass@")
  if isinstance(key, bool) or not text.isdigit() or int(text) < 1:
    raise ValueError(f"{where}: pass_at_k keys must be positive ints, got {key!r}")
  return int(text)


def result_from_samples(benchmark: str, label: str, correct: Any, *,
                        answers: Sequence[Sequence[str | None]] | None = None,
                        gold: Sequence[Any] | None = None,
                        lengths: Any = None, ks: Sequence[int] | None = None,
                        equivalent: metrics.Equivalence | None = None,
                        is_correct: Callable[[str, Any], bool] | None = None,
                        **fields: Any) -> EvalResult:
  """Builds an EvalResult from per-sample outcomes.

  correct: bool [P, k]; answers/gold (both or neither): extracted answers for cons@k;
  lengths: response lengths [P, k] (tokens); ks: pass@k values to report (default 1 and k).
  Extra keyword arguments (temperature, top_p, max_new_tokens, extra) pass through.
  """
  correct = np.asarray(correct)
  if correct.ndim != 2:
    raise ValueError(f"result_from_samples({benchmark!r}, {label!r}): correct must be "
                     f"[problems, samples], got shape {correct.shape}")
  num_problems, k = correct.shape
  if (answers is None) != (gold is None):
    raise ValueError(f"result_from_samples({benchmark!r}, {label!r}): cons@k needs both "
                     f"answers and gold")
  cons = cons_stderr = None
  if answers is not None:
    if len(answers) != num_problems or any(len(a) != k for a in answers):
      raise ValueError(f"result_from_samples({benchmark!r}, {label!r}): answers must be "
                       f"{num_problems} lists of {k}, like correct")
    if num_problems == 0:
      raise ValueError("cons_at_k: no problems given")
    per_problem = metrics.consensus_correct(answers, gold, equivalent=equivalent, is_correct=is_correct)
    cons, cons_stderr = float(np.mean(per_problem)), metrics.standard_error(per_problem)
  ks = sorted({1, k} if ks is None else {int(x) for x in ks})
  mean_length = None
  if lengths is not None:
    mean_length = metrics.response_length_stats(lengths)["mean"]
  return EvalResult(benchmark=benchmark, label=label,
                    pass_at_1=metrics.pass_at_1_mean(correct), num_problems=num_problems, k=k,
                    pass_at_1_stderr=metrics.pass_at_1_stderr(correct),
                    per_problem=np.asarray(correct, np.float64).mean(axis=1).tolist(),
                    cons_at_k=cons, cons_at_k_stderr=cons_stderr, pass_at_k=metrics.mean_pass_at_k(correct, ks),
                    mean_length=mean_length, **fields)


def paired_difference(before: EvalResult, after: EvalResult) -> tuple[float, float]:
  """(mean, standard error) of after - before in pass@1, paired by problem (same benchmark, same
  problems): far tighter than the two unpaired errors when problems differ in difficulty."""
  if before.per_problem is None or after.per_problem is None:
    raise ValueError(f"paired_difference: {before.label!r} or {after.label!r} has no per-problem scores")
  if len(before.per_problem) != len(after.per_problem) or before.benchmark != after.benchmark:
    raise ValueError(f"paired_difference: {before.label!r} and {after.label!r} were not scored on the same problems")
  d = np.asarray(after.per_problem) - np.asarray(before.per_problem)
  return float(d.mean()), metrics.standard_error(d)


# ----------------------------------------------------------------------------------------------
# JSON


def write_json(results: Sequence[EvalResult], path: str | os.PathLike) -> str:
  """Writes `results` whole or not at all (see `fs.write_json`) as {"format", "results": [...]}."""
  path = os.fspath(path)
  fs.write_json(path, {"format": FORMAT, "results": [r.to_dict() for r in results]})
  return path


def load_json(path: str | os.PathLike) -> list[EvalResult]:
  """Reads a file written by `write_json` (or a bare list of result objects)."""
  path = os.fspath(path)
  try:
    payload = json.loads(fs.read_text(path))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
  if isinstance(payload, Mapping):
    if payload.get("format", FORMAT) != FORMAT:
      raise ValueError(f"{path}: format {payload.get('format')!r} is not {FORMAT!r}")
    if "results" not in payload:
      raise ValueError(f"{path}: no 'results' list")
    payload = payload["results"]
  if not isinstance(payload, list):
    raise ValueError(f"{path}: 'results' must be a list, got {type(payload).__name__}")
  return [EvalResult.from_dict(row, where=f"{path}: results[{i}]")
          for i, row in enumerate(payload)]


# ----------------------------------------------------------------------------------------------
# Markdown


def _cell(text: str) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def _percent(value: float | None) -> str:
  return MISSING if value is None else f"{100.0 * value:.1f}"


def _with_stderr(value: float | None, stderr: float | None) -> str:
  """"57.4 ± 3.1" (one standard error over problems) when the error is known."""
  if value is None or stderr is None:
    return _percent(value)
  return f"{_percent(value)} ± {_percent(stderr)}"


def _metric_rows(column: Sequence[EvalResult | None], include_pass_at_k: bool,
                 include_length: bool) -> list[tuple[str, str, list[str]]]:
  """(metric, row name, cells) of one benchmark: metric is "pass@1", "cons@k", "pass@<k>",
  "format" or "mean length"; the row name spells out k ("cons@64")."""
  present = [r for r in column if r is not None]
  rows = [("pass@1", "pass@1", [MISSING if r is None else _with_stderr(r.pass_at_1, r.pass_at_1_stderr)
                                for r in column])]
  for k in sorted({r.k for r in present if r.cons_at_k is not None}):
    rows.append(("cons@k", f"cons@{k}", [
        _with_stderr(r.cons_at_k, r.cons_at_k_stderr) if r is not None and r.k == k else MISSING
        for r in column]))
  if include_pass_at_k:
    for k in sorted({kk for r in present for kk in r.pass_at_k if kk > 1}):
      rows.append((f"pass@{k}", f"pass@{k}", [
          _percent(r.pass_at_k.get(k) if r is not None else None) for r in column]))
  if any(r.format_rate is not None for r in present):
    rows.append(("format", "format", [_percent(r.format_rate if r is not None else None) for r in column]))
  if include_length and any(r.mean_length is not None for r in present):
    rows.append(("mean length", "mean length", [
        MISSING if r is None or r.mean_length is None else f"{r.mean_length:.0f}" for r in column]))
  return rows


def markdown_table(results: Sequence[EvalResult], labels: Sequence[str] | None = None, *,
                   include_pass_at_k: bool = True, include_length: bool = False,
                   metrics: Mapping[str, Sequence[str]] | None = None,
                   names: Mapping[str, str] | None = None) -> str:
  """A Markdown table: one row per (benchmark, metric), one column per checkpoint/stage.

  Columns follow `labels` (default: order of first appearance in `results`). Rows, per
  benchmark in order of first appearance: "(pass@1)", "(cons@k)" for each k evaluated,
  "(pass@k)" for each k > 1 reported, "(format)" where measured, and, with include_length,
  "(mean length)" in tokens. `metrics` ({benchmark: ["pass@1", "cons@k", ...]}) keeps only those
  rows of a benchmark, in that order (the paper's Table 3: AIME pass@1 and cons@64, the others
  pass@1); `names` ({benchmark: "AIME 2024"}) is the name a row shows.
  Values are percentages with one decimal, pass@1 and cons@k with "± one standard error" over
  problems where known; missing entries are "–".
  """
  if not results:
    raise ValueError("markdown_table: no results")
  cells: dict[tuple[str, str], EvalResult] = {}
  benchmarks: list[str] = []
  for r in results:
    if (r.benchmark, r.label) in cells:
      raise ValueError(f"markdown_table: two results for benchmark {r.benchmark!r}, "
                       f"label {r.label!r}")
    cells[(r.benchmark, r.label)] = r
    if r.benchmark not in benchmarks:
      benchmarks.append(r.benchmark)
  seen_labels = list(dict.fromkeys(r.label for r in results))
  if labels is None:
    labels = seen_labels
  else:
    labels = list(labels)
    if len(set(labels)) != len(labels):
      raise ValueError(f"markdown_table: repeated labels in {labels}")
    unknown = [label for label in labels if label not in seen_labels]
    if unknown:
      raise ValueError(f"markdown_table: labels {unknown} have no results; known: {seen_labels}")

  for bench, wanted in (metrics or {}).items():
    bad = [m for m in wanted if m not in TABLE_METRICS and not re.fullmatch(r"pass@[1-9][0-9]*", m)]
    if bad:
      raise ValueError(f"markdown_table: metrics[{bench!r}] names unknown metrics {bad}; known: "
                       f"{list(TABLE_METRICS)} and pass@<k>")
  rows: list[list[str]] = []
  for bench in benchmarks:
    title = (names or {}).get(bench, bench)
    by_metric = {metric: (name, row) for metric, name, row in
                 _metric_rows([cells.get((bench, label)) for label in labels], include_pass_at_k, include_length)}
    wanted = list(by_metric) if metrics is None or bench not in metrics else list(metrics[bench])
    rows += [[f"{title} ({by_metric[m][0]})"] + by_metric[m][1] for m in wanted if m in by_metric]

  header = ["Benchmark (Metric)"] + list(labels)
  lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
           "|" + "|".join([" --- "] + [" ---: "] * len(labels)) + "|"]
  lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def write_markdown(results: Sequence[EvalResult], path: str | os.PathLike,
                   labels: Sequence[str] | None = None, **options: Any) -> str:
  """Writes `markdown_table(results, labels, **options)` to `path`; returns the path."""
  path = os.fspath(path)
  fs.write_text(path, markdown_table(results, labels, **options))
  return path
