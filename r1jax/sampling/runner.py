"""DecodeRun: the device side of one generate call — a cache and decode state of `slots` rows,
and the three operations the scheduler needs (prefill some rows, decode, read finished rows).

Only small vectors cross to the host between decode chunks ([B] done flags and lengths) plus
the rows that finished: gathered on device and trimmed to a bucket of the longest finished row
when they are a few, copied whole when (about) every slot finished. With several processes every
process drives the same schedule on the same host inputs (the prompts of the global batch) and
reads the global rows (`parallel.multihost.host_get`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from r1jax.models.config import ModelConfig
from r1jax.parallel.multihost import host_get
from r1jax.sampling import programs
from r1jax.sampling.buckets import BucketPolicy
from r1jax.sampling.params import StaticSampling


@dataclasses.dataclass(frozen=True)
class Request:
  """One row to generate: its prompt, row id (output order and PRNG stream) and token limit."""
  prompt: np.ndarray  # [L] int32
  row_id: int
  limit: int


@dataclasses.dataclass
class RowOutput:
  tokens: np.ndarray  # [n] int32, the stop token included
  logprobs: np.ndarray  # [n] fp32
  sampling_logprobs: np.ndarray  # [n] fp32
  stopped: bool  # True: ended on a stop token; False: reached its limit


@functools.partial(jax.jit, static_argnames=("width",))
def _take_rows(state, idx, *, width: int):
  programs.TRACES["take_rows"] += 1
  return {k: state[k][idx, :width] for k in ("tokens", "logprobs", "sampling_logprobs")}


class DecodeRun:
  """Buffers for `slots` rows, prompt bucket `prompt_len`, `max_new` columns."""

  def __init__(self, *, cfg: ModelConfig, graphdef, params, slots: int, prompt_len: int, max_new: int,
               static: StaticSampling, knobs: dict, buckets: BucketPolicy,
               batch_sharding: Optional[NamedSharding]):
    self.cfg, self.graphdef, self.params = cfg, graphdef, params
    self.slots, self.prompt_len, self.max_new = slots, prompt_len, max_new
    self.static, self.knobs, self.buckets = static, knobs, buckets
    self.batch_sharding = batch_sharding
    self.decode_steps = 0
    self.cache, self.state = programs.init_buffers(cfg=cfg, batch=slots, length=prompt_len + max_new,
                                                   max_new=max_new, batch_sharding=batch_sharding)

  def _put(self, x: np.ndarray):
    """Batch-shard host inputs when they split evenly over the batch shards, else replicate."""
    s = self.batch_sharding
    if s is None:
      return jnp.asarray(x)
    n = int(np.prod([s.mesh.shape[a] for a in s.spec[0]]))
    spec = s if x.shape[0] % n == 0 else NamedSharding(s.mesh, jax.sharding.PartitionSpec())
    return jax.device_put(x, spec)

  def prefill(self, slots: Sequence[int], requests: Sequence[Request]) -> None:
    """Installs `requests` in `slots` (one batched prefill, R rounded up to a bucket)."""
    R = self.buckets.refill_rows(len(slots), self.slots)
    tokens = np.zeros((R, self.prompt_len), np.int32)
    plen = np.ones((R,), np.int32)
    row_id = np.zeros((R,), np.int32)
    limit = np.ones((R,), np.int32)
    rows = np.full((R,), self.slots, np.int32)  # out of range = padding, dropped
    for i, (slot, req) in enumerate(zip(slots, requests)):
      tokens[i, :len(req.prompt)] = req.prompt
      plen[i], row_id[i], limit[i], rows[i] = len(req.prompt), req.row_id, req.limit, slot
    self.cache, self.state = programs.prefill_rows(
        self.params, self.cache, self.state, self._put(rows), self._put(tokens), self._put(plen),
        self._put(row_id), self._put(limit), self.knobs, graphdef=self.graphdef, static=self.static,
        batch_sharding=self.batch_sharding)

  def decode(self, threshold: int) -> None:
    """Decodes until all rows are done, or at least `threshold` rows (idle ones included) are."""
    knobs = dict(self.knobs, threshold=np.int32(threshold))
    self.cache, self.state, steps = programs.decode(
        self.params, self.cache, self.state, knobs, graphdef=self.graphdef, static=self.static,
        batch_sharding=self.batch_sharding)
    self.decode_steps += int(steps)

  def status(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(done [B] bool, n [B] int, stopped [B] bool) on host."""
    st = host_get({k: self.state[k] for k in ("done", "n", "stopped")})
    return st["done"], st["n"], st["stopped"]

  def read_rows(self, slots: Sequence[int], n: np.ndarray, stopped: np.ndarray) -> list[RowOutput]:
    """Outputs of finished `slots`; n/stopped from `status()`."""
    if not len(slots):
      return []
    R = self.buckets.refill_rows(len(slots), self.slots)
    if R == self.slots:  # (about) every row: copy the buffers as they are, no gather program
      got = host_get({k: self.state[k] for k in ("tokens", "logprobs", "sampling_logprobs")})
      where = list(slots)
    else:
      idx = np.zeros((R,), np.int32)
      idx[:len(slots)] = slots
      width = min(self.max_new, self.buckets.new_tokens(int(max(n[s] for s in slots))))
      got = host_get(_take_rows(self.state, idx, width=width))  # numpy: replicated on every process
      where = list(range(len(slots)))
    return [RowOutput(got["tokens"][i, :n[s]], got["logprobs"][i, :n[s]], got["sampling_logprobs"][i, :n[s]],
                      bool(stopped[s])) for i, s in zip(where, slots)]
