"""Shape buckets: prompt length, batch (slots), new tokens and refill group sizes are rounded up so
a run compiles a handful of programs instead of one per step.

Rule: powers of two from a minimum up to `pow2_until`, then multiples of `pow2_until` (so a 5k-token
limit costs at most one extra 1k block, not 3k). Batch buckets are also multiples of the number of
batch shards, so the batch splits evenly over the mesh.
"""
from __future__ import annotations

import dataclasses
import math


def round_up(n: int, minimum: int = 1, pow2_until: int = 1024) -> int:
  """Smallest bucket >= max(n, minimum): a power of two up to pow2_until, then a multiple of it."""
  if n < 0:
    raise ValueError(f"round_up: size must be >= 0, got {n}")
  n = max(int(n), int(minimum), 1)
  if n <= pow2_until:
    return 1 << (n - 1).bit_length()
  return math.ceil(n / pow2_until) * pow2_until


def round_to_multiple(n: int, multiple: int) -> int:
  return math.ceil(n / multiple) * multiple


@dataclasses.dataclass(frozen=True)
class BucketPolicy:
  """Minimum bucket sizes. Small minimums mean less padding; large ones mean fewer programs."""
  min_prompt_len: int = 16
  min_new_tokens: int = 16
  min_batch: int = 1
  min_stop_ids: int = 4
  min_refill_rows: int = 1  # smallest refill prefill (fewer refill programs vs. padded prefill rows)
  pow2_until: int = 1024

  def prompt_len(self, n: int) -> int:
    return round_up(n, self.min_prompt_len, self.pow2_until)

  def new_tokens(self, n: int) -> int:
    return round_up(n, self.min_new_tokens, self.pow2_until)

  def batch(self, n: int, shards: int = 1) -> int:
    """Slots: a power of two (then multiples of 1024), and a multiple of the batch shards."""
    return round_to_multiple(round_up(n, self.min_batch, self.pow2_until), shards)

  def refill_rows(self, n: int, slots: int) -> int:
    """Rows in one refill prefill: a power of two, capped at the slot count."""
    return min(round_up(n, self.min_refill_rows, self.pow2_until), slots)

  def stop_ids(self, n: int) -> int:
    return round_up(n, self.min_stop_ids, self.pow2_until)
