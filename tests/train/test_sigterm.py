"""Preemption through the CLI: a real SIGTERM sent to a running stage (subprocess).

The handler (r1jax.train.checkpoint) must finish the current step, save a checkpoint of exactly
that step, and exit 0 promptly without an export; the re-run must resume from that step (not 0).
- SFT: the preempted-and-resumed run ends with parameters identical to an uninterrupted run.
- GRPO (R1-Zero, micro): a signal in the last rollout saves it without an export (a preempted run
  is not a finished one); the re-run restores it and exports.
- Two processes (jax.distributed on CPU), SIGTERM to one: both stop at the same step (JAX's
  preemption sync point), save it once, and exit 0.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.train.test_stages import RL_MICRO, ROOT, SFT_MICRO, _assert_same, _cli, _env, _params, _run

# A checkpoint every 1000 steps: the only mid-run checkpoint is the one SIGTERM makes.
NO_PERIODIC_CKPT = "--config.train.checkpoint_every=1000"
EXIT_WITHIN_S = 60.0  # generous for a loaded 2-core machine; typically ~1 s


def _complete_lines(path: str) -> list[str]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    text = f.read()
  return text.split("\n")[:-1]  # a line still being written has no newline yet


def _wait_for_rows(proc: subprocess.Popen, path: str, n: int, timeout: float = 300.0) -> None:
  """Polls `path` (metrics.jsonl) until it has `n` rows; fails if the run exits first."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      pytest.fail(f"run exited ({proc.returncode}) before writing {n} metrics rows")
    if len(_complete_lines(path)) >= n:
      return
    time.sleep(0.02)
  pytest.fail(f"no {n} metrics rows in {path} after {timeout} s")


def _preempt(cmd: list[str], workdir: str, after_rows: int) -> tuple[int, float, str]:
  """Starts `cmd`, sends SIGTERM once `after_rows` metrics rows exist; returns (rc, seconds to exit, stderr)."""
  # stderr goes to a file: an unread pipe could fill up and block the run.
  with tempfile.TemporaryFile("w+") as err:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
      try:
        _wait_for_rows(proc, os.path.join(workdir, "metrics.jsonl"), after_rows)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=EXIT_WITHIN_S)
        seconds = time.monotonic() - t0
      finally:
        if proc.poll() is None:
          proc.kill()
          proc.wait()
    finally:
      err.seek(0)
      text = err.read()
      if proc.returncode != 0:
        print(text[-4000:])  # shown by pytest when the test fails
  return proc.returncode, seconds, text


def _checkpoint_steps(workdir: str) -> list[int]:
  """Committed orbax steps (in-flight saves live in *.orbax-checkpoint-tmp-* dirs)."""
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _rows(workdir: str) -> list[dict]:
  return [json.loads(line) for line in _complete_lines(os.path.join(workdir, "metrics.jsonl"))]


@pytest.mark.slow
def test_sft_sigterm_saves_the_reached_step_and_resumes_exactly(tmp_path):
  cfg = os.path.join(ROOT, "experiments", "cold_start.py:tiny")
  cache = str(tmp_path / "cache")
  N = 30  # ~0.15 s a step: several seconds in which the signal lands mid-run
  flags = (f"--config.train.steps={N}", NO_PERIODIC_CKPT, *SFT_MICRO)
  straight, preempted = str(tmp_path / "straight"), str(tmp_path / "preempted")
  _run(_cli(cfg, straight, *flags, cache=cache))  # also warms the compilation cache

  rc, seconds, err = _preempt(_cli(cfg, preempted, *flags, cache=cache), preempted, after_rows=2)
  assert rc == 0, (rc, err[-3000:])
  assert seconds < EXIT_WITHIN_S
  rows = _rows(preempted)
  reached = rows[-1]["step"]
  assert 2 <= reached < N, f"SIGTERM did not land mid-run (reached step {reached} of {N}); raise N"
  assert [r["step"] for r in rows] == list(range(1, reached + 1))
  assert _checkpoint_steps(preempted) == [reached]  # exactly the step it reached, committed
  assert f"checkpoint saved at step {reached}" in err
  assert not os.path.exists(os.path.join(preempted, "final"))  # no export from a preempted run

  _run(_cli(cfg, preempted, *flags, cache=cache))
  steps = [r["step"] for r in _rows(preempted)]
  assert steps == list(range(1, N + 1)), steps  # continued at reached + 1, not from 1
  _assert_same(_params(straight), _params(preempted))


@pytest.mark.slow
def test_grpo_sigterm_in_the_last_rollout_saves_and_the_rerun_exports(tmp_path):
  """The signal lands in the last rollout (or, rarely, right after the first): the run must save
  that rollout and exit without an export, and the re-run must restore it and export, not call
  a preempted run finished nor train again from rollout 0."""
  cfg = os.path.join(ROOT, "experiments", "r1_zero.py:tiny")
  total = 2  # the signal goes out once rollout 1's row exists, i.e. during rollout 2 (~1.5 s)
  flags = (f"--config.train.rollouts={total}", *RL_MICRO, NO_PERIODIC_CKPT, "--config.train.plots=False")
  wd = str(tmp_path / "grpo")
  rc, seconds, err = _preempt(_cli(cfg, wd, *flags), wd, after_rows=1)
  assert rc == 0, (rc, err[-3000:])
  assert seconds < EXIT_WITHIN_S
  reached = int(_rows(wd)[-1]["rollout"])
  assert reached in (1, total)
  assert _checkpoint_steps(wd) == [reached]  # the GRPO checkpoint index is the rollout
  assert f"checkpoint saved at step {reached}" in err
  assert not os.path.exists(os.path.join(wd, "final"))  # preempted, even in its last rollout

  _run(_cli(cfg, wd, *flags))
  rows = _rows(wd)
  assert [int(r["rollout"]) for r in rows] == list(range(1, total + 1))  # nothing lost or repeated
  assert [int(r["step"]) for r in rows] == [2 * r for r in range(1, total + 1)]  # 2 minibatch updates each
  assert os.path.exists(os.path.join(wd, "final", "model.safetensors"))


_WORKER = '''
import os, sys, time
import numpy as np
import jax

pid, port, ckpt_dir, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
jax.distributed.initialize(f"localhost:{port}", 2, pid)
from r1jax.train.checkpoint import Checkpointer, install_preemption_handler

install_preemption_handler()
ckpt = Checkpointer(ckpt_dir)
open(os.path.join(out_dir, f"ready{pid}"), "w").write(str(os.getpid()))
for step in range(1, 600):
  time.sleep(0.05)  # a "train step"
  try:
    ckpt.end_of_step(step, {"w": np.full((4,), step, np.float32)}, every=10**6, last=10**6)
  except SystemExit:
    open(os.path.join(out_dir, f"stopped{pid}"), "w").write(str(step))
    raise
sys.exit(3)  # never preempted
'''


def test_two_processes_stop_at_one_step_when_one_gets_sigterm(tmp_path):
  """Multi-host preemption (jax.distributed on CPU): SIGTERM reaches one process only; JAX's
  preemption sync point must make both save the same step and exit 0. A Python SIGTERM handler
  would displace JAX's and leave the other process hanging in the save."""
  import socket

  import numpy as np

  from r1jax.train.checkpoint import Checkpointer

  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = str(s.getsockname()[1])
  script, ckpt_dir = tmp_path / "worker.py", str(tmp_path / "ckpt")
  script.write_text(_WORKER)
  env = {**_env(), "JAX_PLATFORMS": "cpu"}
  logs = [tmp_path / f"stderr{i}.txt" for i in (0, 1)]
  handles = [open(log, "w") for log in logs]
  procs = [subprocess.Popen([sys.executable, str(script), str(i), port, ckpt_dir, str(tmp_path)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=handles[i]) for i in (0, 1)]
  try:
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in (0, 1)):
      assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
          [log.read_text()[-2000:] for log in logs]
      time.sleep(0.02)
    procs[1].send_signal(signal.SIGTERM)  # process 1 only
    for p in procs:
      p.wait(timeout=EXIT_WITHIN_S)
  finally:
    for p, h in zip(procs, handles):
      if p.poll() is None:
        p.kill()
        p.wait()
      h.close()
  assert [p.returncode for p in procs] == [0, 0], [log.read_text()[-2000:] for log in logs]
  stopped = [int((tmp_path / f"stopped{i}").read_text()) for i in (0, 1)]
  assert stopped[0] == stopped[1], stopped
  assert sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit()) == [stopped[0]]
  restored, _ = Checkpointer(ckpt_dir).restore({"w": np.zeros((4,), np.float32)})
  np.testing.assert_array_equal(np.asarray(restored["w"]), np.full((4,), stopped[0], np.float32))
