"""The in-process sampler: `Sampler.generate(params, prompts, sampling)` on the trainer's weights.

`params` is the nnx State of the policy (`graphdef, params = nnx.split(model)`), sharded however
the trainer shards it; nothing is copied or closed over, so after an optimizer step the next call
sees the new arrays. Prompts are token-id lists of any lengths; they are right-padded to a
bucketed length P and prefilled in one pass (positions 0..len-1, padding has segment id 0 and is
never attended), the first new token comes from the logits at each row's last prompt token, then
one jitted `lax.while_loop` decodes until every row is done: token t of a row is written at cache
slot P + t - 1 with position len + t - 1 (programs.py). With `refill=True` and fewer slots than rows,
finished slots take the next queued prompt (refill.py).

Returned log-probs are fp32 under the policy's tempered (logits / T), untruncated softmax (GRPO's
old_logprobs; T = 1 when greedy) and, optionally, under the distribution actually sampled. The stop token is kept.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Optional, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from r1jax.models.config import ModelConfig
from r1jax.parallel.sharding import BATCH_AXES
from r1jax.sampling import programs
from r1jax.sampling.buckets import BucketPolicy
from r1jax.sampling.cache import cache_report
from r1jax.sampling.params import SamplingParams
from r1jax.sampling.refill import run_schedule
from r1jax.sampling.runner import DecodeRun, Request, RowOutput


@dataclasses.dataclass
class GenerationResult:
  """Rows are prompt-major: row i*n + j is sample j of prompt i (`prompt_index` = group ids)."""
  tokens: np.ndarray  # [N, L] int32, 0 past each row's length; L = max requested new tokens
  lengths: np.ndarray  # [N] int32, stop token included
  finish_reasons: list[str]  # "stop" | "length"
  logprobs: np.ndarray  # [N, L] fp32 log softmax(logits / T) of the sampled tokens, 0 past the length
  sampling_logprobs: Optional[np.ndarray]  # [N, L] fp32 under the sampling distribution, if asked
  prompt_index: np.ndarray  # [N] int32
  stats: dict

  @property
  def completion_mask(self) -> np.ndarray:
    return np.arange(self.tokens.shape[1])[None, :] < self.lengths[:, None]  # [N, L]

  def completions(self) -> list[list[int]]:
    return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths)]


@dataclasses.dataclass
class SamplerStats:
  compiles: dict = dataclasses.field(default_factory=dict)  # program -> traces this sampler caused
  calls: int = 0
  new_tokens: int = 0
  seconds: float = 0.0
  decode_steps: int = 0

  @property
  def tokens_per_s(self) -> float:
    return self.new_tokens / self.seconds if self.seconds else 0.0

  @property
  def total_compiles(self) -> int:
    return sum(self.compiles.values())


def infer_mesh(params) -> Optional[Mesh]:
  """The mesh the parameters live on (None if unsharded / on one device)."""
  for leaf in jax.tree.leaves(params):
    s = getattr(leaf, "sharding", None)
    if isinstance(s, NamedSharding) and s.mesh.size > 1:
      return s.mesh
  return None


def _batch_spec(x) -> Optional[P]:
  """P(<spec of dim 0>) for a NamedSharding'd array whose other dims are unsharded, else None."""
  s = x.sharding
  if not isinstance(s, NamedSharding) or s.mesh.size == 1:
    return None
  spec = tuple(s.spec)
  return P(spec[0]) if spec and all(e is None for e in spec[1:]) else P(*spec)


def _as_prompt(p, i: int, vocab: int) -> np.ndarray:
  a = np.asarray(p)
  if a.ndim != 1 or a.size == 0:
    raise ValueError(f"generate: prompts[{i}] must be a non-empty 1-D list of token ids, got shape {a.shape}")
  if not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"generate: prompts[{i}] must hold integer token ids, got dtype {a.dtype}")
  bad = np.flatnonzero((a < 0) | (a >= vocab))
  if bad.size:
    raise ValueError(f"generate: prompts[{i}][{bad[0]}] = {a[bad[0]]} is outside the vocabulary [0, {vocab})")
  return a.astype(np.int32)


def _requests(prompts, sampling: SamplingParams, limits_per_prompt, vocab: int) -> tuple[list[Request], int]:
  """Rows in prompt-major order (row i*n + j = sample j of prompt i), each with its token limit."""
  if len(prompts) == 0:
    raise ValueError("generate: prompts is empty")
  arrays = [_as_prompt(p, i, vocab) for i, p in enumerate(prompts)]
  limits = [sampling.max_new_tokens] * len(arrays)
  if limits_per_prompt is not None:
    if len(limits_per_prompt) != len(arrays):
      raise ValueError(f"generate: max_new_tokens_per_prompt has {len(limits_per_prompt)} "
                       f"entries for {len(arrays)} prompts")
    for i, m in enumerate(limits_per_prompt):
      if not 1 <= int(m) <= sampling.max_new_tokens:
        raise ValueError(f"generate: max_new_tokens_per_prompt[{i}] = {m} must be in "
                         f"[1, sampling.max_new_tokens={sampling.max_new_tokens}]")
    limits = [int(m) for m in limits_per_prompt]
  requests = [Request(a, i * sampling.n + j, lim) for i, (a, lim) in enumerate(zip(arrays, limits))
              for j in range(sampling.n)]
  return requests, len(arrays)


def _assemble(outputs: list[RowOutput], width: int, with_sampling_lp: bool):
  """Row outputs -> padded [N, width] arrays (0 past each row's length), lengths and reasons."""
  n = len(outputs)
  tokens = np.zeros((n, width), np.int32)
  logprobs = np.zeros((n, width), np.float32)
  sampling_lp = np.zeros((n, width), np.float32) if with_sampling_lp else None
  lengths = np.array([len(o.tokens) for o in outputs], np.int32)
  for r, (out, k) in enumerate(zip(outputs, lengths)):
    tokens[r, :k], logprobs[r, :k] = out.tokens, out.logprobs
    if sampling_lp is not None:
      sampling_lp[r, :k] = out.sampling_logprobs
  reasons = ["stop" if o.stopped else "length" for o in outputs]
  return tokens, lengths, reasons, logprobs, sampling_lp


class Sampler:
  """Caches compiled programs per bucket (module-level jits, shared by samplers on one graph) and
  keeps stats. `mesh=None` uses the mesh of the params (if any) with the batch over
  `batch_axes` (those present in the mesh)."""

  def __init__(self, graphdef, cfg: ModelConfig, *, mesh: Optional[Mesh] = None,
               batch_axes: Sequence[str] = BATCH_AXES, buckets: BucketPolicy = BucketPolicy()):
    self.graphdef, self.cfg, self.mesh, self.buckets = graphdef, cfg, mesh, buckets
    self.batch_axes = tuple(batch_axes)
    self.stats = SamplerStats()

  @classmethod
  def from_model(cls, model: nnx.Module, **kw) -> tuple["Sampler", nnx.State]:
    graphdef, params = nnx.split(model)
    return cls(graphdef, model.cfg, **kw), params

  def cache_report(self) -> dict:
    return cache_report(self.cfg)

  def _batch_sharding(self, params) -> tuple[Optional[NamedSharding], int]:
    mesh = self.mesh or infer_mesh(params)
    if mesh is None:
      return None, 1
    axes = tuple(a for a in self.batch_axes if a in mesh.axis_names)
    if not axes:
      return None, 1
    return NamedSharding(mesh, P(axes)), math.prod(mesh.shape[a] for a in axes)

  def generate(self, params, prompts: Sequence[Sequence[int]], sampling: SamplingParams, *,
               num_slots: Optional[int] = None, refill: bool = False, min_refill_rows: Optional[int] = None,
               max_new_tokens_per_prompt: Optional[Sequence[int]] = None) -> GenerationResult:
    """Generates sampling.n completions per prompt.

    num_slots: decode batch (rounded up to a bucket); default: all rows at once. With fewer slots
      than rows, rows are queued: static batches (refill=False) or slot refill (refill=True).
    min_refill_rows: refill once this many rows have finished (default slots // 8, at least 1).
    max_new_tokens_per_prompt: optional per-prompt limits (<= sampling.max_new_tokens), e.g. the
      context left for each prompt.
    """
    t0 = time.perf_counter()
    traces0 = dict(programs.TRACES)
    cfg = self.cfg
    if not isinstance(sampling, SamplingParams):
      raise TypeError(f"generate: sampling must be a SamplingParams, got {type(sampling).__name__}")
    sampling.validate_vocab(cfg.vocab_size)
    if num_slots is not None and num_slots < 1:
      raise ValueError(f"generate: num_slots must be >= 1, got {num_slots}")
    requests, n_prompts = _requests(prompts, sampling, max_new_tokens_per_prompt, cfg.vocab_size)
    n_rows = len(requests)

    batch_sharding, shards = self._batch_sharding(params)
    slots = self.buckets.batch(min(num_slots or n_rows, n_rows), shards)
    prompt_len = self.buckets.prompt_len(max(len(r.prompt) for r in requests))
    max_new = self.buckets.new_tokens(sampling.max_new_tokens)
    stops = np.full((self.buckets.stop_ids(len(sampling.stop_token_ids)),), -1, np.int32)
    stops[:len(sampling.stop_token_ids)] = sampling.stop_token_ids
    knobs = {"temperature": np.float32(sampling.temperature or 1.0), "top_p": np.float32(sampling.top_p),
             "seed": np.uint32(sampling.seed), "stop_ids": stops}
    run = DecodeRun(cfg=cfg, graphdef=self.graphdef, params=params, slots=slots, prompt_len=prompt_len,
                    max_new=max_new, static=sampling.static_key(cfg.vocab_size), knobs=knobs,
                    buckets=self.buckets, batch_sharding=batch_sharding)
    min_refill = min_refill_rows or max(1, slots // 8)
    outputs, sched = run_schedule(run, requests, refill=refill, min_refill_rows=min_refill)
    tokens, lengths, reasons, logprobs, sampling_lp = _assemble(
        [outputs[r] for r in range(n_rows)], max(r.limit for r in requests), sampling.return_sampling_logprobs)

    seconds = time.perf_counter() - t0
    compiles = {k: v - traces0.get(k, 0) for k, v in programs.TRACES.items() if v != traces0.get(k, 0)}
    new_tokens = int(lengths.sum())
    st = self.stats
    st.calls += 1
    st.new_tokens += new_tokens
    st.seconds += seconds
    st.decode_steps += run.decode_steps
    for k, v in compiles.items():
      st.compiles[k] = st.compiles.get(k, 0) + v
    stats = {"seconds": seconds, "new_tokens": new_tokens, "tokens_per_s": new_tokens / seconds,
             "decode_steps": run.decode_steps, "slots": slots, "prompt_bucket": prompt_len,
             "new_tokens_bucket": max_new, "prefills": sched.prefills, "decode_calls": sched.decode_calls,
             # fraction of decode-step slot work that produced a token (first tokens come from prefill)
             "slot_utilization": (new_tokens - n_rows) / max(1, slots * run.decode_steps),
             "compiles": compiles,
             # where the buffers lived: the batch axis spec of the cache and decode state (None unsharded)
             "cache_spec": _batch_spec(jax.tree.leaves(run.cache["layers"])[0]),
             "state_spec": _batch_spec(run.state["tokens"])}
    return GenerationResult(tokens, lengths, reasons, logprobs, sampling_lp,
                            np.repeat(np.arange(n_prompts, dtype=np.int32), sampling.n), stats)


def generate(model: nnx.Module, prompts: Sequence[Sequence[int]], sampling: SamplingParams, *,
             mesh: Optional[Mesh] = None, buckets: BucketPolicy = BucketPolicy(), **kw) -> GenerationResult:
  """One-off convenience: splits `model` and samples (compiled programs are shared across calls).
  `kw` goes to `Sampler.generate`."""
  sampler, params = Sampler.from_model(model, mesh=mesh, buckets=buckets)
  return sampler.generate(params, prompts, sampling, **kw)
