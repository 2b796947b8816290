"""Run the r1jax CLI on N real JAX processes (Gloo collectives on CPU): the multi-host code path of
a TPU VM slice or a GPU cluster, on one machine. Every process gets `devices // N` CPU devices."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_cli(config: str, workdir: str, flags=(), *, processes: int, devices: int = 4, cache: str | None = None,
            timeout: int = 600) -> tuple[float, list[str]]:
  """`python -m r1jax --config=config --workdir=workdir flags` on `processes` processes; asserts
  each exits 0 (showing the failing one's log); returns (wall seconds, the processes' logs)."""
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices // processes}")
  cmd = [sys.executable, "-m", "r1jax", f"--config={config}", f"--workdir={workdir}", *flags]
  if cache:
    cmd.append(f"--config.compilation_cache_dir={cache}")
  if processes > 1:
    port = free_port()
    cmds = [cmd + [f"--config.distributed.num_processes={processes}", f"--config.distributed.process_id={i}",
                   f"--config.distributed.coordinator_address=127.0.0.1:{port}"] for i in range(processes)]
  else:
    cmds = [cmd]
  t0 = time.perf_counter()
  procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in cmds]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=timeout)[0].decode(errors="replace"))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for i, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == 0, f"process {i} of {processes} failed:\n{log[-4000:]}"
  return time.perf_counter() - t0, logs
