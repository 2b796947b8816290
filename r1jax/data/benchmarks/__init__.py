"""The paper's benchmarks (Table 3) from local files: no download, ever.

`load_benchmark(name, path, options)` reads one file (JSONL, Parquet or CSV, by suffix) in the
dataset's public column layout into evaluation records, the offline tasks' shape ({prompt,
answer, task, id, _loc} plus `benchmark` and the benchmark's own fields), so evaluation, grading
(the `accuracy` reward routes each record by its task) and the report work unchanged:

  aime2024       AIME 2024 (30 problems)      task "math"             pass@1, cons@64   k = 64
  math500        MATH-500                     task "math"             pass@1            k = 4
  gpqa_diamond   GPQA Diamond (198)           task "multiple_choice"  pass@1            k = 16
  livecodebench  LiveCodeBench (code gen.)    task "code"             pass@1            k = 8

k is the number of samples per question at the paper's settings; the paper says only "k between
4 and 64, depending on the test set size", so these are r1jax's choice by size: 64 for AIME's 30
problems (cons@64 needs them), 16 for GPQA's 198, 8 for LiveCodeBench's few hundred in the
paper's window (each sample runs the tests in the sandbox), 4 for MATH-500's 500. A bad row is an
error naming file:line (or parquet row) and the column; see each loader's module for its layout.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from r1jax.data.benchmarks import gpqa, livecodebench, math_sets


@dataclasses.dataclass(frozen=True)
class LoadOptions:
  seed: int = 0           # GPQA: the option shuffle
  date_from: str = ""     # LiveCodeBench: date_from <= contest_date < date_to (ISO; "" = open)
  date_to: str = ""


@dataclasses.dataclass(frozen=True)
class Benchmark:
  name: str
  title: str                       # the paper's row name
  task: str                        # the reward that grades it
  paper_k: int                     # samples per question in the `paper` evaluation preset
  metrics: tuple[str, ...]         # the paper's rows for it ("pass@1", "cons@k")
  load: Callable[[str, LoadOptions], list[dict]]


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark(math_sets.AIME_2024, "AIME 2024", math_sets.TASK, 64, ("pass@1", "cons@k"), math_sets.load_aime),
    Benchmark(math_sets.MATH_500, "MATH-500", math_sets.TASK, 4, ("pass@1",), math_sets.load_math500),
    Benchmark(gpqa.GPQA_DIAMOND, "GPQA Diamond", gpqa.TASK, 16, ("pass@1",), gpqa.load_gpqa),
    Benchmark(livecodebench.LIVECODEBENCH, "LiveCodeBench", livecodebench.TASK, 8, ("pass@1",),
              livecodebench.load_livecodebench),
)}


def get_benchmark(name: str) -> Benchmark:
  if name not in BENCHMARKS:
    raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
  return BENCHMARKS[name]


def load_benchmark(name: str, path: str, options: LoadOptions = LoadOptions()) -> list[dict]:
  """Every problem of benchmark `name` in the file at `path` (DataError on a bad row)."""
  return get_benchmark(name).load(path, options)
