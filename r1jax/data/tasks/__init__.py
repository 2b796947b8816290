"""Procedural task sets that need no downloads (code problems with generated tests, …).

Reasoning tasks (each module: `generate(split, n, seed, difficulty)`): `countdown`, `arithmetic`
(+ and ×), `addition` (+ only), `knights_knaves`. `get_task(name)` returns the module. Their exact
verifiers are rewards registered under the same names (r1jax/rewards/verifiers.py), which the
`accuracy` reward picks by each row's `metadata["task"]`.
"""
from __future__ import annotations

from types import ModuleType

from r1jax.data.tasks import addition, arithmetic, countdown, knights_knaves

REASONING_TASKS: dict[str, ModuleType] = {
    countdown.TASK: countdown, arithmetic.TASK: arithmetic, addition.TASK: addition,
    knights_knaves.TASK: knights_knaves}


def get_task(name: str) -> ModuleType:
  if name not in REASONING_TASKS:
    raise KeyError(f"unknown task {name!r}; known: {sorted(REASONING_TASKS)}")
  return REASONING_TASKS[name]
