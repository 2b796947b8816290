"""Sweep files: `get_sweep()` -> a dict naming a base experiment config and the `--config.a.b`
values to sweep; expanded here into runs (name, overrides) in a stable order.

    from r1jax import sweep

    def get_sweep():
      return dict(
          name="r1_zero_lr_beta",
          config="experiments/r1_zero.py:tiny",
          sweep=sweep.product(("optim.learning_rate", [1e-5, 5e-5]), ("grpo.beta", [0.0, 0.001])),
          fixed={"train.rollouts": 10},
          metrics=("eval/pass@1", "reward/mean"),
          names={"optim.learning_rate": "lr", "grpo.beta": "beta"},
      )

`product(*factors)` crosses its factors (the first varies slowest), `zip(*factors)` pairs them
element by element; a factor is `(key, values)` or another product/zip, and `values` is a list or
a {label: value} dict (the label goes into the run name instead of the value). `sweep` may also be
a list of {key: value} dicts, one per run. Every error names the sweep file and the entry.
"""
from __future__ import annotations

import ast
import builtins
import dataclasses
import difflib
import hashlib
import importlib.util
import json
import os
import re
from typing import Any, Mapping, Sequence

FIELDS = ("name", "config", "sweep", "fixed", "metrics", "names")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_NAME = 160


class SweepError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Grid:
  """Runs as rows: `keys` (dotted config keys) and, per run, a tuple of (label, value) per key."""
  keys: tuple[str, ...]
  points: tuple[tuple[tuple[str, Any], ...], ...]

  def __len__(self) -> int:
    return len(self.points)


def _factor(f: Any, where: str) -> Grid:
  if isinstance(f, Grid):
    return f
  if not (isinstance(f, tuple) and len(f) == 2 and isinstance(f[0], str)):
    raise SweepError(f"{where}: expected (\"a.b\", [values]) or a product/zip, got {f!r}")
  key, values = _key(f[0], where), f[1]
  if isinstance(values, Mapping):
    items = [(str(label), v) for label, v in values.items()]
  elif isinstance(values, (list, tuple)):
    items = [(flag_value(v), v) for v in values]
  else:
    raise SweepError(f"{where}: values of {key!r} must be a list or a {{label: value}} dict, got {values!r}")
  if not items:
    raise SweepError(f"{where}: {key!r} has no values")
  for _, v in items:
    _check_value(v, f"{where}: {key!r}")
  return Grid((key,), tuple((item,) for item in items))


def _joined(grids: Sequence[Grid], where: str) -> tuple[str, ...]:
  keys: list[str] = []
  for g in grids:
    for k in g.keys:
      if k in keys:
        raise SweepError(f"{where}: key {k!r} is swept twice")
      keys.append(k)
  return tuple(keys)


def product(*factors) -> Grid:
  """Every combination of the factors' values; the first factor varies slowest."""
  grids = [_factor(f, f"product entry {i}") for i, f in enumerate(factors)]
  keys = _joined(grids, "product")
  points: list[tuple] = [()]
  for g in grids:
    points = [p + q for p in points for q in g.points]
  return Grid(keys, tuple(points))


def zip(*factors) -> Grid:  # noqa: A001 (sweep.zip, as in the sweep files)
  """The factors' values paired element by element; all factors have the same length."""
  grids = [_factor(f, f"zip entry {i}") for i, f in enumerate(factors)]
  keys = _joined(grids, "zip")
  lengths = {", ".join(g.keys): len(g) for g in grids}
  if len(set(lengths.values())) > 1:
    raise SweepError(f"zip: lengths differ: {lengths}")
  points = tuple(sum(ps, ()) for ps in builtins.zip(*(g.points for g in grids)))
  return Grid(keys, points)


# ------------------------------------------------------------------------------------ values


def _key(key: str, where: str) -> str:
  key = key[len("--config."):] if key.startswith("--config.") else key
  if not _KEY.fullmatch(key):
    raise SweepError(f"{where}: {key!r} is not a dotted config key like 'optim.learning_rate'")
  return key


def _check_value(v: Any, where: str) -> None:
  if isinstance(v, str):
    return
  try:
    ok = ast.literal_eval(_literal(v)) == v
  except (ValueError, SyntaxError, TypeError, RecursionError):
    ok = False
  if not ok:
    raise SweepError(f"{where}: value {v!r} cannot be written as a command-line flag "
                     "(use numbers, strings, bools, None, or tuples/lists/dicts of them)")


def _literal(v: Any) -> str:
  """A Python literal of `v`, its strings in double quotes (so a shell-quoted flag stays readable)."""
  if isinstance(v, str):
    return json.dumps(v, ensure_ascii=False)
  if isinstance(v, tuple):
    return "(" + ", ".join(map(_literal, v)) + ("," if len(v) == 1 else "") + ")"
  if isinstance(v, list):
    return "[" + ", ".join(map(_literal, v)) + "]"
  if isinstance(v, dict):
    return "{" + ", ".join(f"{_literal(k)}: {_literal(x)}" for k, x in v.items()) + "}"
  return repr(v)


def flag_value(v: Any) -> str:
  """The text after `--config.a.b=`: strings as they are, everything else as a Python literal
  (what ml_collections parses back: '("/a.jsonl",)' for a tuple field)."""
  return v if isinstance(v, str) else _literal(v)


def safe(text: str) -> str:
  """Filesystem- and shell-safe: runs of other characters become one '_'."""
  return _UNSAFE.sub("_", text).strip("_") or "_"


# ------------------------------------------------------------------------------------ the sweep


@dataclasses.dataclass(frozen=True)
class Run:
  index: int  # 1-based, the sweep's order
  name: str  # the run's directory under the sweep workdir
  swept: tuple[tuple[str, Any], ...]  # (key, value) of the swept keys
  overrides: tuple[tuple[str, Any], ...]  # fixed, then swept: what goes on the command line


@dataclasses.dataclass(frozen=True)
class Sweep:
  path: str  # the sweep file
  name: str
  config: str  # "path/to/experiment.py:arg", the path as the runs' command line gives it
  keys: tuple[str, ...]  # swept keys, in order
  runs: tuple[Run, ...]
  metrics: tuple[str, ...]


def _explicit_runs(rows: Any, where: str) -> Grid:
  if not rows or not all(isinstance(r, Mapping) for r in rows):
    raise SweepError(f"{where}: a list of runs must hold {{key: value}} dicts, got {rows!r}")
  keys: list[str] = []
  for r in rows:
    keys += [_key(k, where) for k in r if _key(k, where) not in keys]
  points = []
  for i, r in enumerate(rows):
    r = {_key(k, where): v for k, v in r.items()}
    missing = [k for k in keys if k not in r]
    if missing:
      raise SweepError(f"{where}[{i}]: missing {missing} (every run must set the same keys)")
    for k in keys:
      _check_value(r[k], f"{where}[{i}]: {k!r}")
    points.append(tuple((flag_value(r[k]), r[k]) for k in keys))
  return Grid(tuple(keys), tuple(points))


def _labels(keys: Sequence[str], names: Mapping[str, str], where: str) -> dict[str, str]:
  for k in names:
    if k not in keys:
      raise SweepError(f"{where}: names[{k!r}]: not a swept key; swept: {list(keys)}")
  last = [k.rsplit(".", 1)[-1] for k in keys]
  return {k: safe(str(names[k])) if k in names else (l if last.count(l) == 1 else k)
          for k, l in builtins.zip(keys, last)}


def run_name(labels: Sequence[tuple[str, str]]) -> str:
  """"lr=5e-05,beta=0.001" from [(key label, value label)]."""
  name = ",".join(f"{safe(k)}={safe(v)}" for k, v in labels) or "run"
  if len(name) > _MAX_NAME:
    name = name[:_MAX_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
  return name


def resolve_config(spec: str, root: str, where: str) -> str:
  """The config spec with its file found relative to the working directory or the repository."""
  path, sep, arg = spec.partition(":")
  if not path.endswith(".py"):
    raise SweepError(f"{where}: 'config': {spec!r} is not 'experiments/<file>.py:<arg>'")
  if not os.path.isabs(path) and not os.path.exists(path) and os.path.exists(os.path.join(root, path)):
    path = os.path.join(root, path)
  if not os.path.exists(path):
    raise SweepError(f"{where}: 'config': {path!r} not found")
  return path + sep + arg


def load_sweep(path: str) -> Sweep:
  """Runs `path`'s get_sweep() and expands it; every error names the file and the entry."""
  where = path
  if not os.path.exists(path):
    raise SweepError(f"{path}: sweep file not found")
  mod_spec = importlib.util.spec_from_file_location(f"r1jax_sweep_{safe(os.path.basename(path)[:-3])}", path)
  module = importlib.util.module_from_spec(mod_spec)
  try:
    mod_spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
      raise SweepError("no get_sweep() function")
    raw = module.get_sweep()
  except SweepError as e:
    raise SweepError(f"{where}: {e}") from None
  if not isinstance(raw, Mapping):
    raise SweepError(f"{where}: get_sweep() must return a dict, got {type(raw).__name__}")
  unknown = [k for k in raw if k not in FIELDS]
  if unknown:
    hint = difflib.get_close_matches(str(unknown[0]), FIELDS, n=1)
    raise SweepError(f"{where}: unknown entry {unknown[0]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                     + f"; entries: {list(FIELDS)}")
  if not isinstance(raw.get("config"), str):
    raise SweepError(f"{where}: 'config' must be a string like 'experiments/r1_zero.py:tiny'")
  name = raw.get("name") or os.path.basename(path)[:-3]
  if not isinstance(name, str):
    raise SweepError(f"{where}: 'name' must be a string, got {name!r}")

  grid = raw.get("sweep")
  if grid is None:
    grid = Grid((), ((),))
  elif isinstance(grid, list) or (isinstance(grid, tuple) and grid and isinstance(grid[0], Mapping)):
    grid = _explicit_runs(grid, f"{where}: 'sweep'")
  elif not isinstance(grid, Grid):
    try:
      grid = _factor(grid, "'sweep'")  # one ("a.b", [values])
    except SweepError as e:
      raise SweepError(f"{where}: {e}") from None

  fixed = raw.get("fixed") or {}
  try:
    fixed = dict(fixed)
  except (TypeError, ValueError):
    raise SweepError(f"{where}: 'fixed' must be a {{key: value}} dict, got {fixed!r}") from None
  fixed_items = []
  for k, v in fixed.items():
    if not isinstance(k, str):
      raise SweepError(f"{where}: 'fixed': key {k!r} is not a string")
    k = _key(k, f"{where}: 'fixed'")
    _check_value(v, f"{where}: 'fixed': {k!r}")
    if k in grid.keys:
      raise SweepError(f"{where}: 'fixed': {k!r} is also swept")
    fixed_items.append((k, v))

  metrics = raw.get("metrics") or ()
  metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
  for m in metrics:
    if not isinstance(m, str) or not m:
      raise SweepError(f"{where}: 'metrics': {m!r} is not a metric name like 'eval/pass@1'")
  names = raw.get("names") or {}
  if not isinstance(names, Mapping):
    raise SweepError(f"{where}: 'names' must be a {{key: short name}} dict, got {names!r}")
  labels = _labels(grid.keys, {_key(k, f"{where}: 'names'"): v for k, v in names.items()}, f"{where}: 'names'")

  runs, seen = [], {}
  for i, point in enumerate(grid.points, start=1):
    swept = tuple((k, v) for k, (_, v) in builtins.zip(grid.keys, point))
    rname = run_name([(labels[k], lab) for k, (lab, _) in builtins.zip(grid.keys, point)])
    if rname in seen:
      raise SweepError(f"{where}: runs {seen[rname]} and {i} get the same directory name {rname!r}; "
                       "give their values distinct labels ({label: value} dicts)")
    seen[rname] = i
    runs.append(Run(i, rname, swept, tuple(fixed_items) + swept))
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  config = resolve_config(raw["config"], root, where)
  return Sweep(path, name, config, grid.keys, tuple(runs), metrics)
