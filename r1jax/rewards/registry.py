"""One signature for every reward function, a registry by name, and a weighted combination.

A reward function grades a whole batch at once (so it can use a process pool):

    fn(completions: Sequence[str], answers: Sequence[Any], metadata: Sequence[Mapping]) -> RewardOutput

`answers[i]` and `metadata[i]` belong to `completions[i]` (they are repeated G times upstream,
never inferred from order). Scores are float32 [N]; a function never raises into the trainer:
`combine` turns an exception into zero scores and an error count.

The built-in rewards live in sibling modules that register themselves on import; `build` and
`available` import them on demand (`BUILTIN_MODULES`), so `build("math")` works without the caller
importing `r1jax.rewards.math` first. Task verifiers written as a per-item
`verify(completion, answer) -> float` join through `register_item_verifier`.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from typing import Any, Callable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RewardOutput:
  scores: np.ndarray  # float32 [N]
  metrics: dict[str, float] = dataclasses.field(default_factory=dict)


RewardFn = Callable[[Sequence[str], Sequence[Any], Sequence[Mapping[str, Any]]], RewardOutput]
ItemVerifier = Callable[[str, Any], float]

_REGISTRY: dict[str, Callable[..., RewardFn]] = {}

# Reward name → module that registers it. A module missing from this checkout is skipped.
BUILTIN_MODULES: dict[str, str] = {
    "math": "r1jax.rewards.math",
    "format": "r1jax.rewards.format",
    "language": "r1jax.rewards.language",
    "accuracy": "r1jax.rewards.combine",
    "code": "r1jax.rewards.code",
    "helpfulness_rm": "r1jax.rewards.model",
    "safety_rm": "r1jax.rewards.model",
}


def register(name: str):
  """Registers a reward *factory*: `factory(**options) -> RewardFn`."""

  def deco(factory):
    if name in _REGISTRY and _REGISTRY[name] is not factory:
      raise ValueError(f"reward {name!r} is already registered")
    _REGISTRY[name] = factory
    return factory

  return deco


def _import_builtin(name: str, strict: bool = True) -> None:
  """Imports the module that registers `name`; `strict=False` logs its import errors instead."""
  module = BUILTIN_MODULES.get(name)
  if module is None or name in _REGISTRY:
    return
  try:
    importlib.import_module(module)
  except Exception as e:
    if isinstance(e, ModuleNotFoundError) and e.name == module:
      return  # not in this checkout (yet)
    if strict:
      raise
    log.warning("reward module %s failed to import; %r is unavailable", module, name,
                exc_info=True)


def available() -> list[str]:
  for name in BUILTIN_MODULES:
    _import_builtin(name, strict=False)
  return sorted(_REGISTRY)


def build(name: str, **options) -> RewardFn:
  _import_builtin(name)
  if name not in _REGISTRY:
    raise KeyError(f"unknown reward {name!r}; known: {available()}")
  return _REGISTRY[name](**options)


def _as_score(value: Any) -> float:
  """A verifier's return value as a finite float; anything else (None, NaN, "yes") is 0."""
  try:
    score = float(value)
  except (TypeError, ValueError):
    return 0.0
  return score if np.isfinite(score) else 0.0


class ItemVerifierReward:
  """Adapts a per-item `verify(completion, answer) -> float` to the batch signature.

  Each item is called inside try/except: a verifier that raises scores that item 0 and is
  counted in `errors`, so one bad row cannot zero the batch. Runs in-process with no deadline,
  so it is for cheap pure-Python checks (countdown arithmetic, exact match); anything that can
  hang belongs in a worker process, like the math reward.
  """

  def __init__(self, name: str, verify: ItemVerifier):
    self.name = name
    self.verify = verify

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any],
               metadata: Sequence[Mapping[str, Any]] | None = None) -> RewardOutput:
    scores = np.zeros(len(completions), np.float32)  # [N]
    errors = 0
    for i, (completion, answer) in enumerate(zip(completions, answers)):
      try:
        scores[i] = _as_score(self.verify(completion, answer))
      except Exception:  # noqa: BLE001 — a verifier bug must not reach the trainer
        errors += 1
        if errors == 1:
          log.warning("reward %r: verify raised on row %d; scoring it 0", self.name, i,
                      exc_info=True)
    return RewardOutput(scores=scores, metrics={
        "mean": float(scores.mean()) if len(scores) else 0.0, "errors": float(errors)})


def register_item_verifier(name: str, verify: ItemVerifier) -> None:
  """Registers `verify(completion, answer) -> float` as the batch reward `name` (no options)."""
  if not callable(verify):
    raise TypeError(f"reward {name!r}: verify must be callable, got {type(verify).__name__}")

  def factory(**options) -> RewardFn:
    if options:
      raise TypeError(f"reward {name!r} takes no options, got {sorted(options)}")
    return ItemVerifierReward(name, verify)

  factory.verify = verify
  existing = _REGISTRY.get(name)
  if existing is not None and getattr(existing, "verify", None) is verify:
    return  # re-registering the same function (module reloaded) is fine
  register(name)(factory)
