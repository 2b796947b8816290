"""Reward throughput: completions graded per second by the math reward (worker pool) and by the
format and language rewards, on GRPO-shaped batches of realistic completions.

Each repeat grades a fresh batch (new numbers, so no reference parse is cached across repeats,
as in training where every step brings new prompts). The peer, measured in the same run on the
same batches, is the naive way: math-verify called serially in this process (which has no hard
deadline at all). Wall-clock throughput depends on what else runs on the machine, so CPU time per
completion is reported too, with the throughput it implies when each worker has a core.

  venv/bin/python benchmarks/rewards.py [--prompts 32 --group 16 --repeats 3 --workers 2]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time

from r1jax.rewards import format as format_reward
from r1jax.rewards import language as language_reward
from r1jax.rewards import math as math_reward

_SENTENCES = [
    "First, let us restate the problem in our own words.",
    "We need to find the value that satisfies the given condition.",
    "Substituting $x = {a}$ into the equation gives ${a}^2 + {b} = {c}$.",
    "Let me double check this step, since it is easy to make an arithmetic mistake.",
    "By the quadratic formula, $x = \\frac{{-b \\pm \\sqrt{{b^2 - 4ac}}}}{{2a}}$.",
    "Wait, that does not look right; the sign of the second term should be negative.",
    "So the total is ${a} \\cdot {b} = {ab}$, which matches the earlier estimate.",
    "Now we simplify the fraction by dividing numerator and denominator by their gcd.",
    "Hence the interval of valid values is bounded on both sides.",
]


def _gold_and_forms(rng: random.Random) -> tuple[str, list[str], list[str]]:
  """A reference answer, equivalent ways a model writes it, and wrong answers."""
  a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 9)
  kind = rng.choice(["int", "frac", "sqrt", "interval", "set", "poly", "units", "neg"])
  if kind == "int":
    return str(a * b), [str(a * b), f"\\boxed{{{a * b}}}", f"${a * b}$"], [str(a * b + 1)]
  if kind == "frac":
    return f"\\frac{{{a}}}{{{a + b}}}", [f"{a}/{a + b}", f"\\frac{{{2 * a}}}{{{2 * (a + b)}}}"], [
        f"\\frac{{{a + b}}}{{{a}}}"]
  if kind == "sqrt":
    return f"{c}\\sqrt{{2}}", [f"\\sqrt{{{2 * c * c}}}", f"{c}\\sqrt{{2}}"], [f"{c}\\sqrt{{3}}"]
  if kind == "interval":
    right = [f"({a},{a + b}]", f"\\left({a}, {a + b}\\right]"]
    return f"({a}, {a + b}]", right, [f"[{a}, {a + b}]"]
  if kind == "set":
    return f"\\{{{a}, {b}, {c}\\}}", [f"\\{{{c}, {a}, {b}\\}}"], [f"\\{{{a}, {b}\\}}"]
  if kind == "poly":
    return f"x^2 + {a}x + {b}", [f"{b} + {a}x + x^2", f"x^{{2}}+{a}x+{b}"], [f"x^2 + {b}x + {a}"]
  if kind == "units":
    return str(a), [f"{a} cm", f"{a}\\text{{ cm}}", f"The length is {a} cm."], [f"{a + 1} cm"]
  return str(-a), [str(-a), f"$-{a}$"], [str(a)]


def _cot(rng: random.Random, n_sentences: int) -> str:
  a, b = rng.randint(2, 30), rng.randint(2, 30)
  values = dict(a=a, b=b, c=a * a + b, ab=a * b)
  return " ".join(rng.choice(_SENTENCES).format(**values) for _ in range(n_sentences))


def make_batch(rng: random.Random, prompts: int, group: int) -> tuple[list[str], list[str]]:
  """GRPO-shaped batch: `group` samples for each of `prompts` references."""
  completions, golds = [], []
  for _ in range(prompts):
    gold, right, wrong = _gold_and_forms(rng)
    for _ in range(group):
      cot = _cot(rng, rng.randint(15, 40))  # ~1-3k characters of reasoning
      r = rng.random()
      if r < 0.55:
        text = f"<think>\n{cot}\n</think>\n<answer>{rng.choice(right)}</answer>"
      elif r < 0.80:
        text = f"<think>\n{cot}\n</think>\n<answer>{rng.choice(wrong)}</answer>"
      elif r < 0.90:
        text = f"<think>\n{cot} So the answer is $\\boxed{{{rng.choice(right)}}}$."
      else:
        text = f"<think>\n{cot}"  # truncated at the length limit
      completions.append(text)
      golds.append(gold)
  return completions, golds


def _process_cpu_s(pid: int) -> float:
  """User + system CPU seconds of a process (Linux /proc), 0.0 where unavailable."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
  except (OSError, IndexError, ValueError):
    return 0.0


class _Meter:
  """Accumulates wall seconds, CPU seconds (of the given processes) and counts for one method."""

  def __init__(self):
    self.seconds = self.cpu_s = self.graded = 0.0
    self.completions = 0

  def run(self, fn, batch, pids) -> None:
    completions, golds = batch
    cpu0 = sum(_process_cpu_s(p) for p in pids())
    start = time.perf_counter()
    out = fn(completions, golds, [{}] * len(completions))
    self.seconds += time.perf_counter() - start
    self.cpu_s += sum(_process_cpu_s(p) for p in pids()) - cpu0
    self.graded += out.metrics.get("graded", 0.0)
    self.completions += len(completions)

  def report(self, parallelism: int = 1) -> dict[str, float]:
    result = {"completions_per_s": self.completions / self.seconds, "seconds": self.seconds,
              "completions": self.completions}
    if self.graded:
      result["unique_answers_per_s"] = self.graded / self.seconds
    if self.cpu_s > 0:
      result["cpu_ms_per_completion"] = 1e3 * self.cpu_s / self.completions
      # What the same work gives when each process has a core to itself.
      result["cpu_bound_completions_per_s"] = parallelism * self.completions / self.cpu_s
    return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--prompts", type=int, default=32)
  parser.add_argument("--group", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--workers", type=int, default=2)
  args = parser.parse_args()

  rng = random.Random(0)
  warmup = make_batch(random.Random(1), args.prompts, args.group)
  batches = [make_batch(rng, args.prompts, args.group) for _ in range(args.repeats)]
  load_before = os.getloadavg()[0]

  start = time.perf_counter()
  pool_reward = math_reward.MathReward(num_workers=args.workers)
  pool_reward(warmup[0][:8], warmup[1][:8])  # starts the forkserver and the workers
  startup = time.perf_counter() - start
  serial_reward = math_reward.MathReward(num_workers=0)
  # Warm both up on a full batch: math-verify's parser gets faster as its caches fill.
  pool_reward(*warmup)
  serial_reward(*warmup)

  pool, serial, fmt, lang = _Meter(), _Meter(), _Meter(), _Meter()
  pool_pids = lambda: [w.process.pid for w in pool_reward.pool._workers]
  own_pid = lambda: [os.getpid()]
  format_fn, language_fn = format_reward.FormatReward(), language_reward.LanguageReward()
  for batch in batches:  # interleaved, so machine load hits both alike
    pool.run(pool_reward, batch, pool_pids)
    math_reward._GOLD_CACHE.clear()  # new prompts every step: no cached references
    serial.run(serial_reward, batch, own_pid)
    fmt.run(format_fn, batch, own_pid)
    lang.run(language_fn, batch, own_pid)
  pool_reward.close()

  all_completions = [c for completions, _ in batches for c in completions]
  pool_report = pool.report(args.workers)
  serial_report = serial.report(1)
  print(json.dumps({
      "benchmark": "rewards",
      "machine": f"{platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}",
      "load_average_1min": [load_before, os.getloadavg()[0]],
      "batch": f"{args.prompts} prompts x {args.group} samples",
      "repeats": args.repeats,
      "mean_completion_chars": sum(map(len, all_completions)) / len(all_completions),
      f"math_pool_{args.workers}_workers": pool_report,
      "math_pool_startup_s": startup,
      "math_in_process_serial_peer": serial_report,
      "math_speedup_vs_serial": (pool_report["completions_per_s"]
                                 / serial_report["completions_per_s"]),
      "format": fmt.report(),
      "language": lang.report(),
  }, indent=2))


if __name__ == "__main__":
  main()
