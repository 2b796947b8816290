"""Code-reward throughput: trivial correct programs graded per second with N workers (default 2).

Overhead-bound on purpose: every program is `print(int(input()) + k)` with one stdin test, so the
time goes to the sandbox (fork chain, namespaces, private root, interpreter start) and the grader,
not to the program. Programs differ in `k` so the reward's de-duplication does not skip any.
Peers measured in the same run, on the same programs and workers:
  bare_subprocess   `subprocess.run(python -I -S -B -c ...)`: no isolation, no limits at all;
  rlimits_only      the sandbox with only rlimits (+ the audit hook): the cost of the namespaces.
Prints one JSON object. The machine's load average is included: on a shared 2-core box the
numbers move with the neighbours' load.

  venv/bin/python benchmarks/code_reward.py --programs 200 --workers 2
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from r1jax.rewards import code as code_lib
from r1jax.rewards import sandbox as sandbox_lib


def _programs(n: int) -> tuple[list[str], list[dict]]:
  completions = [f"<answer>```python\nprint(int(input()) + {k})\n```</answer>" for k in range(n)]
  answers = [{"tests": [{"stdin": "41\n", "stdout": f"{41 + k}\n"}]} for k in range(n)]
  return completions, answers


def _reward_rate(reward: code_lib.CodeReward, n: int) -> dict:
  completions, answers = _programs(min(8, n))
  reward(completions, answers, [{}] * len(completions))  # warm the slot servers
  completions, answers = _programs(n)
  start = time.perf_counter()
  out = reward(completions, answers, [{}] * n)
  elapsed = time.perf_counter() - start
  assert out.scores.min() == 1.0, out.metrics
  return {"programs_per_s": n / elapsed, "seconds": elapsed}


def _sandbox_latency(sandbox: sandbox_lib.Sandbox, n: int) -> dict:
  results = sandbox.run_many([({"main.py": "print(int(input()) + 1)"}, "41\n", "main.py")] * n)
  assert all(r.stdout == "42\n" for r in results)
  walls = np.array([r.wall_s for r in results]) * 1e3
  cpus = np.array([r.cpu_s for r in results]) * 1e3
  return {"program_wall_ms_p50": float(np.median(walls)),
          "program_wall_ms_p95": float(np.percentile(walls, 95)),
          "program_cpu_ms_mean": float(cpus.mean())}


def _bare_rate(python: str, n: int, workers: int) -> float:
  def run(k: int) -> bytes:
    return subprocess.run([python, "-I", "-S", "-B", "-c", f"print(int(input()) + {k})"],
                          input=b"41\n", capture_output=True, check=True).stdout

  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    list(pool.map(run, range(min(8, n))))
    start = time.perf_counter()
    outputs = list(pool.map(run, range(n)))
    elapsed = time.perf_counter() - start
  assert outputs[1] == b"42\n"
  return n / elapsed


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--programs", type=int, default=200)
  parser.add_argument("--workers", type=int, default=2)
  args = parser.parse_args()

  load_before = os.getloadavg()
  reward = code_lib.CodeReward(max_workers=args.workers, wall_s=10, cpu_s=5)
  isolated = _reward_rate(reward, args.programs)
  latency = _sandbox_latency(reward.sandbox, min(args.programs, 50))
  mode = reward.sandbox.mode
  reward.close()

  weak = code_lib.CodeReward(max_workers=args.workers, wall_s=10, cpu_s=5,
                             mechanisms=("rlimits", "audit"))
  rlimits_only = _reward_rate(weak, args.programs)
  weak.close()

  bare = _bare_rate(os.path.realpath(sys.executable), args.programs, args.workers)
  print(json.dumps({
      "benchmark": "code_reward_trivial_programs",
      "programs": args.programs,
      "workers": args.workers,
      "sandbox_mode": mode,
      "programs_per_s": round(isolated["programs_per_s"], 2),
      "seconds": round(isolated["seconds"], 2),
      **{k: round(v, 2) for k, v in latency.items()},
      "peer_rlimits_only_programs_per_s": round(rlimits_only["programs_per_s"], 2),
      "peer_bare_subprocess_programs_per_s": round(bare, 2),
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
      "python": platform.python_version(),
      "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
  }, indent=2))


if __name__ == "__main__":
  main()
