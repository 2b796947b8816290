"""Multi-digit addition with carries: the `arithmetic` task restricted to "+".

The CPU demo's reasoning task: a tiny model learns the column method from short traces within a
few hundred steps, and held-out problems (split by operand pair, like `arithmetic`) need the
method, not memory. Difficulty d adds two (d+1)-digit numbers; every problem carries at least once.
Rows are graded by the `addition` reward (the arithmetic verifier, r1jax/rewards/verifiers.py).
"""
from __future__ import annotations

from r1jax.data.tasks import arithmetic
from r1jax.data.tasks.base import check_difficulty, sample_problems

TASK = "addition"
MAX_DIFFICULTY = arithmetic.MAX_DIFFICULTY


def generate(split: str, n: int, seed: int = 0, difficulty: int = 1, require_carry: bool = True) -> list[dict]:
  check_difficulty(difficulty, MAX_DIFFICULTY)
  return sample_problems(arithmetic._make(difficulty, ("+",), require_carry), TASK, split, n, seed)
