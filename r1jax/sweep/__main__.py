"""`python -m r1jax.sweep --sweep=experiments/sweeps/<file>.py --workdir=DIR [--dry-run] [--only=...]
[--table-only]`: see r1jax/sweep/__init__.py."""
from __future__ import annotations

import os
import sys

from absl import app, flags

_SWEEP = flags.DEFINE_string("sweep", None, "sweep file (experiments/sweeps/<name>.py) defining get_sweep()")
_WORKDIR = flags.DEFINE_string("workdir", None, "sweep directory; each run goes in <workdir>/<run name> "
                               "(default: runs/<sweep name>)")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "validate, then print each run's shell-quoted command (stdout, "
                             "one per line) and run nothing")
_ONLY = flags.DEFINE_multi_string("only", [], "run only these: a 1-based index (3), a range (2-4), a run name "
                                  "or a glob ('lr=5e-05,*'); repeatable")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "only write sweep.md / sweep.csv / sweep.png from what "
                                "the runs logged")
_VALIDATE = flags.DEFINE_bool("validate", True, "check every run's config before starting (--novalidate: "
                              "for configs naming paths that exist only where the commands will run)")
_PYTHON = flags.DEFINE_string("python", sys.executable, "interpreter the runs are launched with")


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _SWEEP.value:
    raise app.UsageError("--sweep is required, e.g. --sweep=experiments/sweeps/r1_zero_lr_beta.py")
  env = dict(os.environ)  # the runs get the caller's environment, while this process, which only
  if "jax" not in sys.modules:  # parses configs, stays off accelerators (no GPU memory taken)
    os.environ["JAX_PLATFORMS"] = "cpu"
  from r1jax.sweep.command import sweep_command

  return sweep_command(_SWEEP.value, _WORKDIR.value, dry_run=_DRY_RUN.value, only=_ONLY.value,
                       table_only=_TABLE_ONLY.value, validate=_VALIDATE.value, python=_PYTHON.value, env=env)


def _underscores(argv):
  """--dry-run, --table-only work as --dry_run, --table_only."""
  out = []
  for a in argv:
    if a.startswith("--"):
      name, eq, value = a[2:].partition("=")
      a = "--" + name.replace("-", "_") + eq + value
    out.append(a)
  return out


if __name__ == "__main__":
  app.run(main, argv=_underscores(sys.argv))
