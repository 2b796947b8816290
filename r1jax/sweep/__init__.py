"""Hyper-parameter sweeps over experiment configs: a sweep file (experiments/sweeps/*.py) crosses or
pairs `--config.a.b` values over a base config; `python -m r1jax.sweep` validates every run, runs
them one after another (each its own `python -m r1jax` process in <workdir>/<run name>), skips the
finished ones on a re-run, and tabulates the chosen metrics (sweep.md, sweep.csv, sweep.png).

    python -m r1jax.sweep --sweep=experiments/sweeps/r1_zero_lr_beta.py --workdir=runs/sweep_lr_beta
    python -m r1jax.sweep ... --dry-run      # the shell-quoted commands, one per line; runs nothing
    python -m r1jax.sweep ... --only=2       # one run (index, name or glob; repeatable)
    python -m r1jax.sweep ... --table-only   # just (re)write the tables from what the runs logged

The sweep-file format is described in `r1jax/sweep/spec.py`.
"""
from r1jax.sweep.spec import Grid, Run, Sweep, SweepError, load_sweep, product, zip  # noqa: A004, F401
