"""Two real JAX processes (CPU, Gloo): each reads its own shard and the batch becomes one global
array — the multi-host path of `pipelines` + `global_batch.to_global`."""
import json
import os
import socket
import subprocess
import sys

import numpy as np


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_make_one_global_batch(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root,
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  port = str(free_port())
  worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "two_process_worker.py")
  outs = [str(tmp_path / f"p{i}.json") for i in range(2)]
  procs = [subprocess.Popen([sys.executable, worker, str(i), port, outs[i]], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=150)[0].decode(errors="replace"))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  res = [json.load(open(o)) for o in outs]
  assert [r["process_index"] for r in res] == [0, 1]
  assert all(r["devices"] == 4 and r["global_shape"] == [4, 16] for r in res)
  local = [np.asarray(r["local"]) for r in res]
  # each process read its own shard: no row in common
  assert not {tuple(x) for x in local[0]} & {tuple(x) for x in local[1]}
  want = int(local[0].sum() + local[1].sum())
  assert res[0]["global_sum"] == res[1]["global_sum"] == want
