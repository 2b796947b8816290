"""SamplingParams: how to sample (temperature, top-k, top-p, length, stop ids, seed, group size).

Values that only change numbers (temperature, top_p, seed, stop ids, max_new_tokens) are fed to
the compiled programs as arrays, so changing them does not recompile. What changes the program's
structure (greedy or not, top-k size, whether top-p is on, whether sampling log-probs are wanted)
is `static_key()`, part of the compile key.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Sequence


class StaticSampling(NamedTuple):
  """The part of SamplingParams that shapes the compiled program (hashable, a jit static arg)."""
  greedy: bool
  top_k: int  # 0 = off
  use_top_p: bool
  sampling_logprobs: bool


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  """temperature 0 means greedy (argmax); top_k 0 and top_p 1.0 mean no truncation.

  Order of processing (as in HF generate): temperature, then top-k, then top-p, then sampling.
  `n` repeats every prompt n times (a GRPO group); the n rows of prompt i are rows i*n .. i*n+n-1.
  `stop_token_ids`: a row stops after emitting any of these, and the stop token is kept.
  """
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0
  max_new_tokens: int = 256
  stop_token_ids: Sequence[int] = ()
  seed: int = 0
  n: int = 1
  return_sampling_logprobs: bool = False

  def __post_init__(self):
    object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
    _check(math.isfinite(self.temperature) and self.temperature >= 0, "temperature",
           f"must be a finite number >= 0 (0 = greedy), got {self.temperature}")
    _check(0.0 < self.top_p <= 1.0, "top_p", f"must be in (0, 1], got {self.top_p}")
    _check(isinstance(self.top_k, int) and self.top_k >= 0, "top_k",
           f"must be an int >= 0 (0 = off), got {self.top_k!r}")
    _check(isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1, "max_new_tokens",
           f"must be an int >= 1, got {self.max_new_tokens!r}")
    _check(isinstance(self.n, int) and self.n >= 1, "n", f"must be an int >= 1, got {self.n!r}")
    _check(all(t >= 0 for t in self.stop_token_ids), "stop_token_ids",
           f"token ids must be >= 0, got {self.stop_token_ids}")
    _check(isinstance(self.seed, int) and 0 <= self.seed < 2**32, "seed",
           f"must be an int in [0, 2**32), got {self.seed!r}")

  @property
  def greedy(self) -> bool:
    return self.temperature == 0.0

  def static_key(self, vocab_size: int) -> StaticSampling:
    """Compile-relevant settings. Greedy ignores top-k/top-p (they cannot change an argmax)."""
    if self.greedy:
      return StaticSampling(True, 0, False, self.return_sampling_logprobs)
    top_k = self.top_k if 0 < self.top_k < vocab_size else 0
    return StaticSampling(False, top_k, self.top_p < 1.0, self.return_sampling_logprobs)

  def validate_vocab(self, vocab_size: int) -> None:
    bad = [t for t in self.stop_token_ids if t >= vocab_size]
    _check(not bad, "stop_token_ids", f"ids {bad} are outside the vocabulary of size {vocab_size}")


def _check(ok: bool, field: str, msg: str) -> None:
  if not ok:
    raise ValueError(f"SamplingParams.{field}: {msg}")
