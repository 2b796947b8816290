"""The compiled programs of the sampler: buffer creation, prefill into rows, and the decode loop.

All three are module-level `jax.jit`s, so every Sampler on the same model graph shares compiled
programs. Parameters are arguments (`graphdef` is static, the weights `params` are traced and
merged inside), so the sampler runs on the trainer's own (sharded) arrays. The cache and the
decode state are donated. `TRACES` counts traces per program (a trace is a compile).

Decode state (a dict of [B, ...] arrays, one row per slot):
  tokens, logprobs, sampling_logprobs [B, M]  outputs; column t is the row's t-th new token
  n [B]        tokens generated so far       limit [B]  max new tokens of the row (<= M)
  plen [B]     prompt length                 row_id [B] the row's id (PRNG stream)
  last [B]     last sampled token            done [B]   finished (or an idle slot)
  stopped [B]  finished on a stop token (else on its length limit)
Token t of a row (t >= 1) is fed at slot P + t - 1 with position plen + t - 1; P = S - M.
"""
from __future__ import annotations

import collections
import functools
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding

from r1jax.models.config import ModelConfig
from r1jax.sampling.cache import empty_cache, replace_rows
from r1jax.sampling.params import StaticSampling
from r1jax.sampling.processors import row_keys, sample

TRACES: collections.Counter = collections.Counter()


def _constrain(tree, sharding: Optional[NamedSharding]):
  """Batch-shard every [B, ...] leaf (no-op unsharded)."""
  if sharding is None:
    return tree
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def empty_state(batch: int, max_new: int) -> dict:
  zi = jnp.zeros((batch,), jnp.int32)
  return {
      "tokens": jnp.zeros((batch, max_new), jnp.int32),
      "logprobs": jnp.zeros((batch, max_new), jnp.float32),
      "sampling_logprobs": jnp.zeros((batch, max_new), jnp.float32),
      "n": zi, "limit": zi, "plen": zi, "row_id": zi, "last": zi,
      "done": jnp.ones((batch,), bool), "stopped": jnp.zeros((batch,), bool),
  }


@functools.partial(jax.jit, static_argnames=("cfg", "batch", "length", "max_new", "batch_sharding"))
def init_buffers(*, cfg: ModelConfig, batch: int, length: int, max_new: int,
                 batch_sharding: Optional[NamedSharding]):
  """An empty cache [batch, length] and decode state, created on device in their sharding."""
  TRACES["init_buffers"] += 1
  return _constrain(empty_cache(cfg, batch, length), batch_sharding), _constrain(
      empty_state(batch, max_new), batch_sharding)


def _is_stop(tokens, stop_ids):
  return jnp.any(tokens[:, None] == stop_ids[None, :], axis=-1)  # stop_ids padded with -1


@functools.partial(jax.jit, static_argnames=("graphdef", "static", "batch_sharding"),
                   donate_argnames=("cache", "state"))
def prefill_rows(params, cache, state, rows, tokens, plen, row_id, limit, knobs, *, graphdef,
                 static: StaticSampling, batch_sharding: Optional[NamedSharding]):
  """Prefills R prompts in one pass and installs them in slots `rows` (rows >= B are padding).

  tokens: [R, P] right-padded prompts; plen, row_id, limit: [R]. The first new token of each row is
  sampled from the logits at its last prompt token. Returns (cache, state).
  """
  TRACES["prefill_rows"] += 1
  model = nnx.merge(graphdef, params)
  R, P = tokens.shape
  positions = jnp.broadcast_to(jnp.arange(P, dtype=jnp.int32), (R, P))
  segment_ids = (positions < plen[:, None]).astype(jnp.int32)  # 0 = padding, never attended
  out = model(tokens, positions, segment_ids, cache=empty_cache(model.cfg, R, P),
              write_index=jnp.zeros((R,), jnp.int32), return_logits=False)
  last_hidden = jnp.take_along_axis(out.hidden, (plen - 1)[:, None, None], axis=1)  # [R, 1, D]
  logits = model.logits(last_hidden)[:, 0]  # [R, V] fp32
  draw = sample(logits, row_keys(knobs["seed"], row_id, jnp.zeros_like(row_id)), static,
                knobs["temperature"], knobs["top_p"])
  cache = replace_rows(cache, rows, out.cache)
  M = state["tokens"].shape[1]
  first_col = lambda v: jnp.zeros((R, M), v.dtype).at[:, 0].set(v)  # noqa: E731
  stopped = _is_stop(draw.tokens, knobs["stop_ids"])
  new_rows = {
      "tokens": first_col(draw.tokens), "logprobs": first_col(draw.logprobs),
      "sampling_logprobs": first_col(draw.sampling_logprobs),
      "n": jnp.ones((R,), jnp.int32), "limit": limit, "plen": plen, "row_id": row_id,
      "last": draw.tokens, "done": stopped | (limit <= 1), "stopped": stopped,
  }
  state = jax.tree.map(lambda big, small: big.at[rows].set(small, mode="drop"), state, new_rows)
  return _constrain(cache, batch_sharding), _constrain(state, batch_sharding)


@functools.partial(jax.jit, static_argnames=("graphdef", "static", "batch_sharding"),
                   donate_argnames=("cache", "state"))
def decode(params, cache, state, knobs, *, graphdef, static: StaticSampling,
           batch_sharding: Optional[NamedSharding]):
  """One `lax.while_loop` of decode steps; runs until every row is done, or until at least
  knobs["threshold"] rows are done (the refill scheduler's cue). Returns (cache, state, steps)."""
  TRACES["decode"] += 1
  B, M = state["tokens"].shape
  P = cache["pos"].shape[1] - M
  rows = jnp.arange(B)

  def cond(carry):
    _, st, _ = carry
    return jnp.any(~st["done"]) & (jnp.sum(st["done"]) < knobs["threshold"])

  def body(carry):
    cache, st, steps = carry
    model = nnx.merge(graphdef, params)
    running = ~st["done"]
    n = st["n"]
    out = model(st["last"][:, None], (st["plen"] + n - 1)[:, None], running[:, None].astype(jnp.int32),
                cache=cache, write_index=P + n - 1, return_logits=True)
    draw = sample(out.logits[:, 0], row_keys(knobs["seed"], st["row_id"], n), static,
                  knobs["temperature"], knobs["top_p"])
    col = jnp.where(running, n, M)  # M is out of range: finished rows write nothing

    def put(buf, v):
      return buf.at[rows, col].set(v, mode="drop")

    stopped = running & _is_stop(draw.tokens, knobs["stop_ids"])
    n = n + running
    st = dict(st, tokens=put(st["tokens"], draw.tokens), logprobs=put(st["logprobs"], draw.logprobs),
              sampling_logprobs=put(st["sampling_logprobs"], draw.sampling_logprobs), n=n,
              last=jnp.where(running, draw.tokens, st["last"]),
              done=st["done"] | stopped | (n >= st["limit"]), stopped=st["stopped"] | stopped)
    return _constrain(out.cache, batch_sharding), _constrain(st, batch_sharding), steps + 1

  cache, state, steps = jax.lax.while_loop(cond, body, (cache, state, jnp.int32(0)))
  return cache, state, steps
