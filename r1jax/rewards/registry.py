"""One signature for every reward function, and a registry of them by name.

A reward function grades a whole batch at once (so it can use a process pool):

    fn(completions: Sequence[str], answers: Sequence[Any], metadata: Sequence[Mapping]) -> RewardOutput

`answers[i]` and `metadata[i]` belong to `completions[i]` (they are repeated G times upstream,
never inferred from order). Scores are float32 [N]; a function never raises into the trainer:
`combine` turns an exception into zero scores and an error count. The one exception is
`RewardUnavailableError`: a reward that cannot grade at all (its grading processes cannot start)
raises it, and it reaches the trainer, because zeros for every row would train on wrong rewards.

Registering is one step, the decorator:

    @register("name")                   # a factory: factory(**options) -> RewardFn
    def build_my_reward(**options): ...

    @register_verifier("countdown")     # a per-item check: verify(completion, answer) -> float
    def verify_countdown(completion, answer): ...

Every module of the `r1jax.rewards` package is discovered: the first `available()`, or `build`
of a name not yet registered, imports each of them once, so a new module in r1jax/rewards/ with
a decorated factory needs no list to join. A module that fails to import is logged (with its
traceback) and its rewards are missing: `available()` leaves them out, and `build(name)` of a
name that is not registered raises an ImportError naming the failed modules and their errors,
rather than calling the name unknown.

Rewards outside the package register the same way: import the module that defines them (e.g.
from the experiment config file) before the trainer builds its rewards; the decorator runs on
import and `available()`, `build` and config validation see the name.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

PACKAGE = __name__.rpartition(".")[0]  # "r1jax.rewards": the package whose modules are discovered


class RewardUnavailableError(RuntimeError):
  """A reward cannot grade anything (not one bad batch): `combine` lets it reach the trainer
  instead of scoring every row 0."""


@dataclasses.dataclass
class RewardOutput:
  scores: np.ndarray  # float32 [N]
  metrics: dict[str, float] = dataclasses.field(default_factory=dict)


RewardFn = Callable[[Sequence[str], Sequence[Any], Sequence[Mapping[str, Any]]], RewardOutput]
ItemVerifier = Callable[[str, Any], float]

_REGISTRY: dict[str, Callable[..., RewardFn]] = {}


def register(name: str):
  """Registers a reward *factory*: `factory(**options) -> RewardFn`."""

  def deco(factory):
    if name in _REGISTRY and _REGISTRY[name] is not factory:
      raise ValueError(f"reward {name!r} is already registered")
    _REGISTRY[name] = factory
    return factory

  return deco


class _Discovery:
  """Imports every module of `package` once; remembers the ones that failed."""

  def __init__(self, package: str):
    self.package = package
    self.done = False
    self.failures: dict[str, BaseException] = {}  # module name -> its import error
    self._lock = threading.RLock()

  def run(self) -> None:
    with self._lock:
      if self.done:  # also true while running: a module that calls available() on import
        return
      self.done = True
      package = importlib.import_module(self.package)
      for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        try:
          importlib.import_module(info.name)
        except Exception as e:  # noqa: BLE001 — one broken module must not hide the others
          self.failures[info.name] = e
          log.warning("reward module %s failed to import; the rewards it registers are "
                      "unavailable", info.name, exc_info=True)


_discovery = _Discovery(PACKAGE)


def available() -> list[str]:
  """Every registered reward name (discovering the package's modules first)."""
  _discovery.run()
  return sorted(_REGISTRY)


def import_failures() -> dict[str, str]:
  """{module: its import error} for the package modules that failed to import (after discovery)."""
  _discovery.run()
  return {module: f"{type(e).__name__}: {e}" for module, e in _discovery.failures.items()}


def build(name: str, **options) -> RewardFn:
  if name not in _REGISTRY:
    _discovery.run()
  if name not in _REGISTRY:
    failures = _discovery.failures
    if failures:
      details = "; ".join(f"{module}: {type(e).__name__}: {e}" for module, e in failures.items())
      raise ImportError(f"reward {name!r} is not registered, and reward modules failed to "
                        f"import (it may be one of theirs): {details}") from next(iter(failures.values()))
    raise KeyError(f"unknown reward {name!r}; known: {sorted(_REGISTRY)}")
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


def register_verifier(name: str):
  """Registers `verify(completion, answer) -> float` as the batch reward `name` (no options).

  A decorator that returns `verify` unchanged, so one function can be stacked under several
  names. Registering the same function twice (a reloaded module) is fine.
  """

  def deco(verify: ItemVerifier) -> ItemVerifier:
    if not callable(verify):
      raise TypeError(f"reward {name!r}: verify must be callable, got {type(verify).__name__}")
    existing = _REGISTRY.get(name)
    if existing is not None and getattr(existing, "verify", None) is verify:
      return verify

    def factory(**options) -> RewardFn:
      if options:
        raise TypeError(f"reward {name!r} takes no options, got {sorted(options)}")
      return ItemVerifierReward(name, verify)

    factory.verify = verify
    register(name)(factory)
    return verify

  return deco
