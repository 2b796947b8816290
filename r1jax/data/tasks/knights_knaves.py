"""Knights and knaves: knights always tell the truth, knaves always lie; who is which?

Each inhabitant makes one statement about the others (or itself). Puzzles are kept only when
exactly one assignment is consistent (checked by enumerating all 2^n assignments), so the answer
is unique. Difficulty d (1..5) means d + 1 inhabitants.

    answer = {"Alice": "knight", "Bob": "knave"}   (graded by the `knights_knaves` reward,
                                                   r1jax/rewards/verifiers.py)

A statement is a tuple: ("is", j, knight?) · ("both", j, k, knight?) · ("either", j, k, knight?)
· ("same", j, k) · ("different", j, k) — j, k index the inhabitants.
"""
from __future__ import annotations

import itertools
import json
from typing import Sequence

import numpy as np

from r1jax.data.tasks.base import check_difficulty, sample_problems

TASK = "knights_knaves"
MAX_DIFFICULTY = 5
NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
         "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter")

Statement = tuple


def truth(stmt: Statement, knights: Sequence[bool]) -> bool:
  """Truth value of a statement when `knights[i]` says whether inhabitant i is a knight."""
  kind = stmt[0]
  if kind == "is":
    return knights[stmt[1]] == stmt[2]
  if kind == "both":
    return knights[stmt[1]] == stmt[3] and knights[stmt[2]] == stmt[3]
  if kind == "either":
    return knights[stmt[1]] == stmt[3] or knights[stmt[2]] == stmt[3]
  if kind == "same":
    return knights[stmt[1]] == knights[stmt[2]]
  if kind == "different":
    return knights[stmt[1]] != knights[stmt[2]]
  raise ValueError(f"unknown statement kind {kind!r}")


def consistent(statements: Sequence[Statement], knights: Sequence[bool]) -> bool:
  """Knights' statements are true and knaves' statements false."""
  return all(truth(s, knights) == knights[i] for i, s in enumerate(statements))


def solutions(statements: Sequence[Statement]) -> list[tuple[bool, ...]]:
  return [k for k in itertools.product((True, False), repeat=len(statements))
          if consistent(statements, k)]


def _role(knight: bool) -> str:
  return "knight" if knight else "knave"


def describe(stmt: Statement, names: Sequence[str], speaker: int) -> str:
  """The statement as its speaker says it ("I" for the speaker, named last in a pair)."""
  kind = stmt[0]
  if kind == "is":
    j, knight = stmt[1], stmt[2]
    return f"I am a {_role(knight)}." if j == speaker else f"{names[j]} is a {_role(knight)}."
  j, k = stmt[1], stmt[2]
  if j == speaker:
    j, k = k, j
  first, second = names[j], ("I" if k == speaker else names[k])
  if kind == "both":
    return f"{first} and {second} are both {_role(stmt[3])}s."
  if kind == "either":
    verb = "am" if second == "I" else "is"
    return f"{first} or {second} {verb} a {_role(stmt[3])}."
  if kind == "same":
    return f"{first} and {second} are the same kind."
  return f"{first} and {second} are different kinds."


def _random_statement(rng: np.random.Generator, n: int, speaker: int) -> Statement:
  kind = ("is", "both", "either", "same", "different")[int(rng.integers(5))]
  if kind == "is" or n < 2:
    return ("is", int(rng.integers(n)), bool(rng.integers(2)))
  # Pair statements are symmetric: store the pair sorted so one puzzle has one key and one text.
  j, k = sorted(int(x) for x in rng.choice(n, size=2, replace=False))
  if kind in ("both", "either"):
    return (kind, j, k, bool(rng.integers(2)))
  return (kind, j, k)


def prompt_for(names: Sequence[str], statements: Sequence[Statement]) -> str:
  says = " ".join(f'{names[i]} says: "{describe(s, names, i)}"' for i, s in enumerate(statements))
  listed = ", ".join(names[:-1]) + f" and {names[-1]}"
  return ("On an island, every inhabitant is either a knight, who always tells the truth, or a "
          f"knave, who always lies. You meet {len(names)} inhabitants: {listed}. {says} "
          "Who is a knight and who is a knave? Answer like <answer> Alice is a knight, Bob is a "
          "knave </answer>")


def _make(difficulty: int):
  n = difficulty + 1

  def make(rng: np.random.Generator) -> tuple[str, dict]:
    while True:
      names = [NAMES[int(i)] for i in rng.choice(len(NAMES), size=n, replace=False)]
      statements = [_random_statement(rng, n, i) for i in range(n)]
      sols = solutions(statements)
      if len(sols) == 1:
        break
    solution = sols[0]
    answer = {names[i]: _role(solution[i]) for i in range(n)}
    key = json.dumps([names, [list(s) for s in statements]])
    item = {"prompt": prompt_for(names, statements), "answer": answer, "names": names,
            "statements": [list(s) for s in statements], "language": "en",
            "difficulty": difficulty}
    return key, item

  return make


def generate(split: str, n: int, seed: int = 0, difficulty: int = 1) -> list[dict]:
  check_difficulty(difficulty, MAX_DIFFICULTY)
  return sample_problems(_make(difficulty), TASK, split, n, seed)
