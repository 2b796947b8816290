"""Runs a sweep: validates every run's config up front, then launches the runs one after another
as `python -m r1jax --config=... --workdir=<sweep workdir>/<run> --config.a.b=v ...` subprocesses.

A run that exits 0 gets `<run>/SWEEP_DONE` (its command and wall time) and is skipped next time;
a run that fails gets `<run>/SWEEP_FAILED` and the sweep goes on; running the sweep again reruns
every unfinished run, which resumes from its own checkpoints. Each run's output is appended to
`<run>/sweep.log`.
"""
from __future__ import annotations

import datetime
import difflib
import fnmatch
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from typing import Any, Callable, Sequence, TextIO

from r1jax.sweep.spec import Run, Sweep, SweepError, flag_value

DONE, FAILED, LOG = "SWEEP_DONE", "SWEEP_FAILED", "sweep.log"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_dir(workdir: str, run: Run) -> str:
  return os.path.join(workdir, run.name)


def launch_argv(sweep: Sweep, run: Run, workdir: str, python: str = sys.executable) -> list[str]:
  """The run's command line, as a list (the config flag before its overrides, as config_flags needs)."""
  return [python, "-m", "r1jax", f"--config={sweep.config}", f"--workdir={run_dir(workdir, run)}",
          *override_flags(run)]


def override_flags(run: Run) -> list[str]:
  return [f"--config.{k}={flag_value(v)}" for k, v in run.overrides]


def shell_command(argv: Sequence[str]) -> str:
  return " ".join(shlex.quote(a) for a in argv)


def select(sweep: Sweep, only: Sequence[str]) -> list[Run]:
  """Runs picked by `only` entries: a 1-based index ("3"), a range ("2-4"), a run name or a glob
  ("lr=5e-05,*"); all runs when `only` is empty. An entry matching nothing is an error."""
  if not only:
    return list(sweep.runs)
  picked: set[int] = set()
  for entry in only:
    lo, sep, hi = entry.partition("-")
    if entry.isdigit() or (sep and lo.isdigit() and hi.isdigit()):
      lo_i, hi_i = int(lo), int(hi or lo)
      hit = {r.index for r in sweep.runs if lo_i <= r.index <= hi_i}
    else:
      hit = {r.index for r in sweep.runs if r.name == entry or fnmatch.fnmatchcase(r.name, entry)}
    if not hit:
      raise SweepError(f"{sweep.path}: --only={entry!r} matches no run; runs: "
                       + ", ".join(f"{r.index}:{r.name}" for r in sweep.runs))
    picked |= hit
  return [r for r in sweep.runs if r.index in picked]


# ------------------------------------------------------------------------------------ validation


def _parse_config(argv: list[str]):
  """The config exactly as the run's `python -m r1jax` parses it (ml_collections config_flags on
  the same argv, locked), without running anything."""
  from absl import flags
  from ml_collections import config_flags

  fv = flags.FlagValues()
  flag = config_flags.DEFINE_config_file("config", None, "experiment config", flag_values=fv,
                                         lock_config=True, sys_argv=argv)
  with warnings.catch_warnings():  # config_flags loads the file with the deprecated load_module()
    warnings.simplefilter("ignore", DeprecationWarning)
    fv(argv)
  return flag.value


def _check_key(cfg, key: str) -> str | None:
  """None if `key` (dotted) names a field of `cfg`, else what is wrong with it."""
  node, path = cfg, "config"
  for part in key.split("."):
    if not hasattr(node, "keys") or part not in node:
      if not hasattr(node, "keys"):
        return f"{path} is a {type(node).__name__}, not a section"
      hint = difflib.get_close_matches(part, list(node.keys()), n=1)
      return f"{path} has no field {part!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    node, path = node[part], f"{path}.{part}"
  return None


def _plain(v: Any) -> Any:
  if hasattr(v, "to_dict"):
    v = v.to_dict()
  if isinstance(v, dict):
    return {k: _plain(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return tuple(_plain(x) for x in v)
  return v


def validate_runs(sweep: Sweep, runs: Sequence[Run]) -> None:
  """Each run's config, parsed from its exact command line and checked by its stage
  (r1jax.train.stages.validate), before any run starts; errors name the run and the key."""
  from r1jax.train.stages import validate

  where = sweep.path
  try:
    base = _parse_config(["r1jax", f"--config={sweep.config}"])
  except Exception as e:  # noqa: BLE001 (the experiment file's own error, named)
    raise SweepError(f"{where}: config {sweep.config!r} does not load: {type(e).__name__}: {e}") from e
  for key, _ in runs[0].overrides if runs else ():
    problem = _check_key(base, key)
    if problem:
      raise SweepError(f"{where}: run {runs[0].name!r}: --config.{key}: {problem}")
  for run in runs:
    argv = ["r1jax", f"--config={sweep.config}", *override_flags(run)]
    try:
      cfg = _parse_config(argv)
    except Exception as e:  # noqa: BLE001
      raise SweepError(f"{where}: run {run.name!r}: {type(e).__name__}: {e}") from e
    for key, value in run.overrides:
      got = cfg
      for part in key.split("."):
        got = got[part]
      if _plain(got) != _plain(value):
        raise SweepError(f"{where}: run {run.name!r}: --config.{key}={flag_value(value)} parses as "
                         f"{_plain(got)!r}, not {value!r}")
    try:
      validate(cfg)
    except Exception as e:  # noqa: BLE001 (ConfigError names the key)
      raise SweepError(f"{where}: run {run.name!r}: {type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------------------ markers


def read_marker(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def status(directory: str) -> tuple[str, dict | None]:
  """("done" | "failed" | "pending", the marker's contents)."""
  for name, state in ((DONE, "done"), (FAILED, "failed")):
    marker = read_marker(os.path.join(directory, name))
    if marker is not None:
      return state, marker
  return "pending", None


def _write_marker(directory: str, name: str, payload: dict) -> None:
  tmp = os.path.join(directory, f".{name}.tmp")
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2)
    f.write("\n")
  os.replace(tmp, os.path.join(directory, name))


def _last_line(path: str) -> str:
  try:
    with open(path, "rb") as f:
      f.seek(max(0, os.path.getsize(path) - 8192))
      lines = [l.strip() for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
    return lines[-1] if lines else ""
  except OSError:
    return ""


def execute(argv: list[str], log_path: str, env: dict) -> int:
  """Runs one command with stdout and stderr appended to `log_path`; its exit status."""
  with open(log_path, "a") as log:
    log.write(f"=== {datetime.datetime.now().isoformat(timespec='seconds')} {shell_command(argv)}\n")
    log.flush()
    return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env).returncode


def child_env(env: dict | None = None) -> dict:
  env = dict(os.environ if env is None else env)
  env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  return env


def run_sweep(sweep: Sweep, runs: Sequence[Run], workdir: str, *, python: str = sys.executable,
              env: dict | None = None, out: TextIO = sys.stdout,
              execute_fn: Callable[[list[str], str, dict], int] | None = None) -> list[dict]:
  """Runs `runs` in order, skipping finished ones; returns one record per run:
  {run, status ("done" | "skipped" | "failed"), wall_s, returncode, log}."""
  env = child_env(env)
  execute_fn = execute_fn or execute
  records = []
  for run in runs:
    d = run_dir(workdir, run)
    argv = launch_argv(sweep, run, workdir, python)
    head = f"[{run.index}/{len(sweep.runs)}] {run.name} ..."
    state, marker = status(d)
    if state == "done":
      note = ""
      if marker.get("command", [None])[1:] != argv[1:]:
        note = f" (with a different command; delete {os.path.join(d, DONE)} to rerun)"
      print(f"{head} already done in {marker.get('wall_s', 0):.1f} s, skipped{note}", file=out, flush=True)
      records.append(dict(run=run, status="skipped", wall_s=marker.get("wall_s"), returncode=0,
                          log=os.path.join(d, LOG)))
      continue
    os.makedirs(d, exist_ok=True)
    if os.path.exists(os.path.join(d, FAILED)):
      os.remove(os.path.join(d, FAILED))
    print(head, end=" ", file=out, flush=True)
    log_path = os.path.join(d, LOG)
    t0 = time.perf_counter()
    try:
      rc = execute_fn(argv, log_path, env)
    except OSError as e:  # the interpreter itself could not start
      with open(log_path, "a") as log:
        log.write(f"could not start: {e}\n")
      rc = 127
    wall = time.perf_counter() - t0
    payload = dict(command=argv, shell=shell_command(argv), returncode=rc, wall_s=round(wall, 3),
                   finished=datetime.datetime.now().isoformat(timespec="seconds"), log=log_path)
    if rc == 0:
      _write_marker(d, DONE, payload)
      print(f"done in {wall:.1f} s", file=out, flush=True)
    else:
      _write_marker(d, FAILED, payload)
      print(f"FAILED (exit {rc}) in {wall:.1f} s, log: {log_path}", file=out, flush=True)
    records.append(dict(run=run, status="done" if rc == 0 else "failed", wall_s=wall, returncode=rc,
                        log=log_path))
  failed = [r for r in records if r["status"] == "failed"]
  ran = sum(r["status"] == "done" for r in records)
  skipped = sum(r["status"] == "skipped" for r in records)
  print(f"sweep {sweep.name}: {ran} ran, {skipped} skipped (done before), {len(failed)} failed", file=out)
  for r in failed:
    print(f"  failed: {r['run'].name} (exit {r['returncode']}): {_last_line(r['log'])}\n"
          f"          log: {r['log']}", file=out)
  return records
