"""Procedural task sets that need no downloads (code problems with generated tests, …).

Reasoning tasks with exact verifiers (each module: `generate(split, n, seed, difficulty)` and
`verify(completion, answer) -> float`): `countdown`, `arithmetic` (+ and ×), `addition` (+ only),
`knights_knaves`.
`get_task(name)` returns the module; `verify(completion, answer, task)` dispatches by name, which
is what the rewards registry calls with `metadata["task"]`.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

from r1jax.data.tasks import addition, arithmetic, countdown, knights_knaves

REASONING_TASKS: dict[str, ModuleType] = {
    countdown.TASK: countdown, arithmetic.TASK: arithmetic, addition.TASK: addition,
    knights_knaves.TASK: knights_knaves}


def get_task(name: str) -> ModuleType:
  if name not in REASONING_TASKS:
    raise KeyError(f"unknown task {name!r}; known: {sorted(REASONING_TASKS)}")
  return REASONING_TASKS[name]


def verify(completion: str, answer: Any, task: str) -> float:
  """Scores a completion with the verifier of `task` (1.0 correct, 0.0 otherwise)."""
  return get_task(task).verify(completion, answer)
