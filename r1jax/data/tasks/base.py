"""Shared machinery of the offline reasoning tasks: splits and sampling.

Every task module exposes

    generate(split, n, seed=0, difficulty=1) -> list[dict]   # prompt, answer, task, id, ...

and its rows are graded by the reward registered under the task's name (r1jax/rewards/verifiers.py).

Train and test are disjoint by construction: a problem's canonical key (e.g. the multiset of
countdown numbers and the target) is hashed, and the hash alone decides its split. Generation
samples problems from a seeded stream and keeps those whose key hashes into the requested split,
without duplicates.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

SPLITS = ("train", "test")


def split_of(key: str, test_fraction: float = 0.1) -> str:
  """'train' or 'test' for a problem key: a stable hash (not Python's salted `hash`)."""
  h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
  return "test" if h < test_fraction * 2**64 else "train"


def check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def check_difficulty(difficulty: int, max_difficulty: int) -> None:
  if not (isinstance(difficulty, (int, np.integer)) and 1 <= difficulty <= max_difficulty):
    raise ValueError(f"difficulty must be an int in [1, {max_difficulty}], got {difficulty!r}")


def sample_problems(make: Callable[[np.random.Generator], tuple[str, dict]], task: str, split: str,
                    n: int, seed: int, test_fraction: float = 0.1,
                    max_misses: int = 20_000) -> list[dict]:
  """Draws `n` distinct problems of `split` from `make(rng) -> (key, item)`.

  The rng depends on (task, split, seed) so two splits are sampled independently; the key hash
  decides membership. Raises if the problem space is too small for `n` distinct problems.
  """
  check_split(split)
  salt = int.from_bytes(hashlib.sha256(f"{task}/{split}".encode()).digest()[:4], "big")
  rng = np.random.default_rng([seed, salt])
  items: list[dict] = []
  seen: set[str] = set()
  misses = 0
  while len(items) < n:
    key, item = make(rng)
    if key in seen or split_of(key, test_fraction) != split:
      misses += 1
      if misses > max_misses:
        raise ValueError(f"{task}: found only {len(items)} distinct {split} problems of the {n} "
                         "asked for; raise the difficulty or lower n")
      continue
    misses = 0
    seen.add(key)
    item.update(task=task, id=f"{task}/{split}/{seed}/{len(items)}", key=key, split=split)
    items.append(item)
  return items
