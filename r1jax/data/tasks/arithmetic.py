"""Multi-digit arithmetic: addition and multiplication with carries.

Difficulty d (1..6): addition of two (d+1)-digit numbers, multiplication of a (d+1)-digit by a
d-digit number. With `require_carry` (default) every problem has at least one carry, which is what
makes it more than digit-wise lookup. The key is the operator and the sorted operands, so "a + b"
and "b + a" share a split.

    answer = "1234"         (the exact integer, as a string)

Rows are graded by the `arithmetic` reward (r1jax/rewards/verifiers.py).
"""
from __future__ import annotations

import numpy as np

from r1jax.data.tasks.base import check_difficulty, sample_problems

TASK = "arithmetic"
MAX_DIFFICULTY = 6
OPS = ("+", "*")


def _random_int(rng: np.random.Generator, digits: int) -> int:
  return int(rng.integers(10 ** (digits - 1), 10**digits))


def addition_carries(a: int, b: int) -> list[int]:
  """Carry out of each column, least significant first (schoolbook addition)."""
  carries, carry = [], 0
  while a or b:
    s = a % 10 + b % 10 + carry
    carry = s // 10
    carries.append(carry)
    a, b = a // 10, b // 10
  return carries


def has_carry(a: int, b: int, op: str) -> bool:
  if op == "+":
    return any(addition_carries(a, b))
  # Within a partial product a carry starts only where a digit product reaches 10; the partial
  # products (shifted) are then summed, which can carry too.
  if any(x * y >= 10 for x in map(int, str(a)) for y in map(int, str(b))):
    return True
  total = 0
  for shift, y in enumerate(reversed(str(b))):
    partial = a * int(y) * 10**shift
    if any(addition_carries(total, partial)):
      return True
    total += partial
  return False


def prompt_for(a: int, b: int, op: str, language: str = "en") -> str:
  sym = "+" if op == "+" else "×"
  if language == "zh":
    return f"计算 {a} {sym} {b} 等于多少？"
  return f"What is {a} {sym} {b}?"


def _make(difficulty: int, ops: tuple[str, ...], require_carry: bool):
  def make(rng: np.random.Generator) -> tuple[str, dict]:
    while True:
      op = ops[int(rng.integers(len(ops)))]
      a = _random_int(rng, difficulty + 1)
      b = _random_int(rng, difficulty + 1 if op == "+" else difficulty)
      if not require_carry or has_carry(a, b, op):
        break
    value = a + b if op == "+" else a * b
    lo, hi = sorted((a, b))
    item = {"prompt": prompt_for(a, b, op), "answer": str(value), "operands": [a, b], "op": op,
            "language": "en", "difficulty": difficulty}
    return f"{lo}{op}{hi}", item

  return make


def generate(split: str, n: int, seed: int = 0, difficulty: int = 1, ops: tuple[str, ...] = OPS,
             require_carry: bool = True) -> list[dict]:
  check_difficulty(difficulty, MAX_DIFFICULTY)
  bad = [o for o in ops if o not in OPS]
  if bad or not ops:
    raise ValueError(f"ops must be a non-empty subset of {OPS}, got {ops}")
  return sample_problems(_make(difficulty, tuple(ops), require_carry), TASK, split, n, seed)
