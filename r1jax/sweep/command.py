"""What `python -m r1jax.sweep` does, as a function (r1jax/sweep/__main__.py holds the flags)."""
from __future__ import annotations

import os
import sys
from typing import Sequence, TextIO

from r1jax.sweep import runner, table
from r1jax.sweep.spec import SweepError, load_sweep


def sweep_command(sweep_file: str, workdir: str | None = None, *, dry_run: bool = False,
                  only: Sequence[str] = (), table_only: bool = False, validate: bool = True,
                  python: str = sys.executable, env: dict | None = None,
                  out: TextIO | None = None, err: TextIO | None = None) -> int:
  """Returns the exit status: 0, 1 if a run failed, 2 if the sweep (file, selection or a run's
  config) is invalid, in which case nothing ran."""
  out, err = out or sys.stdout, err or sys.stderr
  try:
    sweep = load_sweep(sweep_file)
    workdir = workdir or os.path.join("runs", sweep.name)
    runs = runner.select(sweep, only)
    if table_only:
      paths = table.write_tables(sweep, workdir)
      print(open(paths["md"]).read(), end="", file=out)
      print("wrote " + ", ".join(paths.values()), file=err)
      return 0
    if validate:
      runner.validate_runs(sweep, runs)
  except SweepError as e:
    print(f"sweep: {e}", file=err)
    return 2
  if dry_run:
    print(f"# {len(runs)} of {len(sweep.runs)} runs of sweep {sweep.name}" + (", validated" if validate else ""),
          file=err)
    for run in runs:
      print(runner.shell_command(runner.launch_argv(sweep, run, workdir, python)), file=out)
    return 0
  print(f"sweep {sweep.name}: {len(runs)} of {len(sweep.runs)} runs in {workdir}"
        + (", all validated" if validate else ""), file=out, flush=True)
  try:
    records = runner.run_sweep(sweep, runs, workdir, python=python, env=env, out=out)
  finally:
    paths = table.write_tables(sweep, workdir)
    print(f"tables: {', '.join(paths.values())}", file=out)
  print(open(paths["md"]).read(), end="", file=out)
  return 1 if any(r["status"] == "failed" for r in records) else 0
