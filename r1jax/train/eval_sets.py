"""What the evaluation stage evaluates and how it grades it: the offline tasks' test splits
(`eval.tasks`) and the paper's benchmarks from local files (`eval.benchmarks`), each with its
samples per question; and the accuracy reward as a grade function that raises on grader failures.
"""
from __future__ import annotations

import collections
import dataclasses
import inspect
import logging
from typing import Any, Sequence

from r1jax import fs

log = logging.getLogger(__name__)

# Per-row grading problems, counted into each result's `extra["grading"]` (never silent zeros).
COUNTED = ("errors", "bad_gold", "bad_tests", "timeouts", "sandbox_errors", "grader_errors")


@dataclasses.dataclass
class EvalSet:
  name: str            # the result's benchmark name (a task or a benchmark key)
  records: list[dict]  # raw problems: prompt, answer, task, id, ...
  k: int               # samples per question
  task: str            # the reward that grades them (and what cons@k votes on)
  source: str = ""     # the benchmark file


def _as_dict(section: Any) -> dict:
  if section is None:
    return {}
  return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def parse_assignments(spec: Any, key: str, what: str) -> dict[str, str]:
  """"name=value,name=value" -> {name: value} in order; errors name `config.<key>` and the entry."""
  out: dict[str, str] = {}
  for item in [s.strip() for s in str(spec).split(",") if s.strip()]:
    name, sep, value = item.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
      raise ValueError(f"config.{key}: entry {item!r} is not {what}")
    if name in out:
      raise ValueError(f"config.{key}: {name!r} given twice")
    out[name] = value
  return out


def task_names(cfg) -> list[str]:
  return [t.strip() for t in str(cfg.eval.tasks).split(",") if t.strip()]


def benchmark_files(cfg) -> dict[str, str]:
  return parse_assignments(cfg.eval.get("benchmarks", ""), "eval.benchmarks", "name=file")


def benchmark_ks(cfg) -> dict[str, int]:
  out = {}
  for name, value in parse_assignments(cfg.eval.get("benchmark_k", ""), "eval.benchmark_k", "name=k").items():
    if not value.isdigit() or int(value) < 1:
      raise ValueError(f"config.eval.benchmark_k: {name}={value!r} is not a positive integer")
    out[name] = int(value)
  return out


def check_eval_sets(cfg) -> None:
  """Start-of-run checks of eval.tasks / benchmarks / benchmark_k / livecodebench / code: names,
  that each benchmark file exists with a readable format, and the code-reward options."""
  from r1jax.data.benchmarks import BENCHMARKS
  from r1jax.data.benchmarks.livecodebench import date_bound
  from r1jax.data.sources import ROW_FORMATS
  from r1jax.rewards.code import CodeReward
  from r1jax.train.config_check import ConfigError, check_task_names

  try:
    files, ks = benchmark_files(cfg), benchmark_ks(cfg)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if not task_names(cfg) and not files:
    raise ConfigError("config.eval.tasks: name at least one task (comma-separated), or benchmark files in "
                      "config.eval.benchmarks (name=path,...; names: " + ", ".join(BENCHMARKS) + ")")
  if task_names(cfg):
    check_task_names(cfg.eval.tasks, "eval.tasks", comma=True)
  for name, path in files.items():
    if name not in BENCHMARKS:
      raise ConfigError(f"config.eval.benchmarks: unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    if not path.lower().endswith(tuple(ROW_FORMATS)):
      raise ConfigError(f"config.eval.benchmarks: {name}: {path} is not a {'/'.join(sorted(ROW_FORMATS))} file")
    if not fs.isfile(path):
      raise ConfigError(f"config.eval.benchmarks: {name}: {path} does not exist")
  for name in ks:
    if name not in files:
      raise ConfigError(f"config.eval.benchmark_k: {name!r} is not in config.eval.benchmarks ({sorted(files)})")
  lcb = cfg.eval.get("livecodebench", {}) or {}
  for bound in ("date_from", "date_to"):
    try:
      date_bound(lcb.get(bound, ""), f"config.eval.livecodebench.{bound}")
    except ValueError as e:
      raise ConfigError(str(e)) from e
  known = set(inspect.signature(CodeReward).parameters) - {"all_or_nothing", "sandbox"}
  unknown = sorted(set(_as_dict(cfg.eval.get("code", {}))) - known)
  if unknown:
    raise ConfigError(f"config.eval.code: unknown code-reward option(s) {unknown}; known: {sorted(known)}")


def load_eval_sets(cfg) -> list[EvalSet]:
  """The task test splits, then the benchmark files (read whole; a bad row raises, naming it)."""
  from r1jax.data import tasks
  from r1jax.data.benchmarks import BENCHMARKS, LoadOptions, load_benchmark
  from r1jax.data.records import DataError

  e = cfg.eval
  out = []
  for name in task_names(cfg):
    records = tasks.get_task(name).generate("test", int(e.n), seed=int(e.seed), difficulty=int(e.difficulty))
    out.append(EvalSet(name, records, int(e.k), name))
  lcb = e.get("livecodebench", {}) or {}
  options = LoadOptions(seed=int(e.seed), date_from=lcb.get("date_from", ""), date_to=lcb.get("date_to", ""))
  ks = benchmark_ks(cfg)
  for name, path in benchmark_files(cfg).items():
    try:
      records = load_benchmark(name, path, options)
    except DataError as err:
      raise DataError(f"eval.benchmarks {name}: {err}") from err
    b = BENCHMARKS[name]
    out.append(EvalSet(name, records, ks.get(name, b.paper_k), b.task, source=path))
    log.info("benchmark %s: %d problems from %s, k = %d", name, len(records), path, out[-1].k)
  return out


class Grader:
  """The accuracy reward as `evaluate_policy`'s grade function. A reward call that failed, or rows
  no reward grades, raise: a broken grader is not a wrong answer. Per-row problems (a verifier
  error, a reference that does not parse, a timeout, a sandbox error) are counted (`take_counts`)."""

  def __init__(self, cfg, tasks: Sequence[str]):
    from r1jax.rewards.combine import CombinedReward

    code = {**_as_dict(cfg.eval.get("code", {})), "all_or_nothing": True}  # pass@1: every test passes
    self.reward = CombinedReward({"accuracy": 1.0}, options={"accuracy": {"options": {"code": code}}})
    try:
      self.reward.rewards["accuracy"].prepare(sorted(set(tasks)))
    except Exception:
      self.reward.close()
      raise
    self.counts: collections.Counter = collections.Counter()

  def __call__(self, texts, answers, metadata):
    out = self.reward(texts, answers, metadata)
    broken = {k: v for k, v in out.metrics.items() if v and (k == "accuracy/unrouted" or k.endswith("/failed"))}
    if broken:
      raise RuntimeError(f"evaluation: grading failed ({broken}); see the reward's warning above")
    for k, v in out.metrics.items():
      if v and k.rsplit("/", 1)[-1] in COUNTED:
        self.counts[k.removeprefix("accuracy/")] += float(v)
    return out.components["accuracy"]

  def take_counts(self) -> dict[str, float]:
    counts, self.counts = dict(self.counts), collections.Counter()
    return counts

  def close(self) -> None:
    self.reward.close()
