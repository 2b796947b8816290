"""Countdown (as in TinyZero): reach a target with the given numbers and + − × ÷.

Each number may be used at most once; division must be exact where it is used in a solution we
generate, but the verifier evaluates any expression exactly (fractions), so (7 − 3/3)… forms work.
Instances are built from a random expression over all the numbers, so every one is solvable; the
key (sorted numbers, target) decides the split.

    answer = {"target": int, "numbers": [int, ...]}

Rows are graded by the `countdown` reward (r1jax/rewards/verifiers.py).

Difficulty d (1..4): d + 2 numbers drawn from 1..(10·(d+1)); targets in 1..(100·d).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from r1jax.data.tasks.base import check_difficulty, sample_problems

TASK = "countdown"
MAX_DIFFICULTY = 4
_OPS = ("+", "-", "*", "/")


def _params(difficulty: int) -> tuple[int, int, int]:
  """(count of numbers, largest number, largest target)."""
  return difficulty + 2, 10 * (difficulty + 1), 100 * difficulty


def _random_solution(rng: np.random.Generator, numbers: list[int],
                     max_target: int) -> tuple[int, str] | None:
  """Combines all numbers in a random order with random ops (positive, exact); (value, expr)."""
  order = [int(x) for x in rng.permutation(numbers)]
  terms: list[tuple[Fraction, str]] = [(Fraction(x), str(x)) for x in order]
  while len(terms) > 1:
    i, j = rng.choice(len(terms), size=2, replace=False)
    (a, ea), (b, eb) = terms[i], terms[j]
    op = _OPS[int(rng.integers(4))]
    if op == "+":
      v = a + b
    elif op == "-":
      if a <= b:
        a, ea, b, eb = b, eb, a, ea
      v = a - b
    elif op == "*":
      v = a * b
    else:
      if b == 0 or a % b:
        return None
      v = a / b
    if v <= 0 or v.denominator != 1:
      return None
    terms = [t for k, t in enumerate(terms) if k not in (i, j)] + [(v, f"({ea} {op} {eb})")]
  value, expr = terms[0]
  if not 1 <= value <= max_target:
    return None
  return int(value), expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr


def prompt_for(numbers: list[int], target: int) -> str:
  return (f"Using the numbers {numbers}, create an equation that equals {target}. You can use "
          "basic arithmetic operations (+, -, *, /) and each number can be used at most once. "
          "Give the equation alone in the answer, for example <answer> (1 + 2) / 3 </answer>")


def _make(difficulty: int):
  count, max_number, max_target = _params(difficulty)

  def make(rng: np.random.Generator) -> tuple[str, dict]:
    while True:
      numbers = [int(x) for x in rng.integers(1, max_number + 1, size=count)]
      sol = _random_solution(rng, numbers, max_target)
      if sol is not None:
        break
    target, expr = sol
    key = f"{sorted(numbers)}->{target}"
    item = {"prompt": prompt_for(numbers, target),
            "answer": {"target": target, "numbers": numbers},
            "solution": expr, "language": "en", "difficulty": difficulty}
    return key, item

  return make


def generate(split: str, n: int, seed: int = 0, difficulty: int = 1) -> list[dict]:
  check_difficulty(difficulty, MAX_DIFFICULTY)
  return sample_problems(_make(difficulty), TASK, split, n, seed)
