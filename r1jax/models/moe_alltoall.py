"""Expert parallelism with explicit all-to-all: the "alltoall" MoE dispatch backend.

GSPMD over an expert-sharded einsum gathers every token to every expert shard. Here, inside a
`shard_map` over the mesh, each device keeps its own tokens (the batch is sharded over
data / fsdp / expert) and each expert shard its E / X experts:

  1. local routing: every (token, choice) goes to the expert shard owning its expert;
  2. `all_to_all` over "expert": shard d receives, from every shard, the rows routed to it
     ([X, C, D], C rows per source shard, and each row's local expert id);
  3. the local experts run on the received rows (the dropless "blocks" grouped matmul);
  4. `all_to_all` back, and each token sums its K results with its combine weights.

C = n·K (n local tokens) is dropless, the exact result of the dense oracle; `capacity_factor` sets
C = ceil(cf · n·K / X) to bound the buffers, dropping (and counting) the overflow. Expert weights
enter the shard_map sharded over "expert" only: a weight sharded over fsdp / tensor as well is
gathered along those (FSDP-style), tokens never are. Without an "expert" axis > 1 in the current
mesh (or with a token count the batch axes do not divide) the local "blocks" backend runs instead.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from r1jax.parallel.sharding import BATCH_AXES  # how activations' batch rows are sharded

EXPERT_AXIS = "expert"


def _mesh_axes():
  """(the current mesh or None, its expert axis size, the token axes it has, their shard count)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is None or not mesh.axis_names:
    return None, 1, (), 1
  sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
  token_axes = tuple(a for a in BATCH_AXES if a in sizes)
  return mesh, sizes.get(EXPERT_AXIS, 1), token_axes, math.prod(sizes[a] for a in token_axes)


def token_shard_map(fn, n_tokens: int, *, token_args: int, replicated_args: int = 0, outputs: int = 1):
  """`fn` on each device's own token rows (a shard_map over the batch axes: its first `token_args`
  arguments and its `outputs` are row-sharded, the next `replicated_args` whole) when the current
  mesh shards tokens and divides `n_tokens`; else `fn` itself. For per-token work (routing) that
  GSPMD would otherwise all-gather."""
  mesh, _, token_axes, shards = _mesh_axes()
  if shards == 1 or n_tokens % shards:
    return fn
  rows = P(token_axes)
  return jax.shard_map(fn, mesh=mesh, in_specs=(rows,) * token_args + (P(),) * replicated_args,
                       out_specs=(rows,) * outputs, check_vma=False)


def alltoall_dispatch(x, routing, wg, wu, wd, token_mask, *, capacity_factor=None, block: int = 64,
                      local_dispatch=None):
  """Same contract as `moe.dispatch`: x [N, D] -> (y [N, D], dropped assignments)."""
  mesh, X, token_axes, shards = _mesh_axes()
  N, D = x.shape
  E = wg.shape[0]
  if X == 1 or E % X or N % shards:
    return local_dispatch(x, routing, wg, wu, wd, token_mask, backend="blocks", block=block)
  K = routing.experts.shape[1]
  E_local = E // X

  def local(x, experts, weights, mask, wg, wu, wd):
    n = x.shape[0]
    C = n * K if capacity_factor is None else max(1, min(n * K, math.ceil(capacity_factor * n * K / X)))
    flat_e = jnp.where(mask[:, None], experts, E).reshape(-1)  # [nK], masked -> sentinel E
    dest = flat_e // E_local  # the owning expert shard; the sentinel goes to X (nowhere)
    order = jnp.argsort(dest, stable=True)
    s_dest, s_e = dest[order], flat_e[order]
    s_tok = jnp.repeat(jnp.arange(n, dtype=jnp.int32), K)[order]
    counts = jnp.zeros((X + 1,), jnp.int32).at[dest].add(1)
    rank = jnp.arange(n * K, dtype=jnp.int32) - (jnp.cumsum(counts) - counts)[s_dest]
    keep = (s_dest < X) & (rank < C)
    to = jnp.where(keep, s_dest, X)  # out of range: dropped by the scatters
    send_x = jnp.zeros((X, C, D), x.dtype).at[to, rank].set(x[s_tok], mode="drop")
    send_e = jnp.full((X, C), E_local, jnp.int32).at[to, rank].set(s_e % E_local, mode="drop")
    recv_x = jax.lax.all_to_all(send_x, EXPERT_AXIS, 0, 0)  # [X, C, D]: recv_x[s] came from shard s
    recv_e = jax.lax.all_to_all(send_e, EXPERT_AXIS, 0, 0)
    rows_e = recv_e.reshape(X * C)
    valid = rows_e < E_local  # empty buffer slots carry the sentinel
    ones = jnp.ones((X * C, 1), jnp.float32)
    local_routing = type(routing)(weights=ones, experts=jnp.minimum(rows_e, E_local - 1)[:, None], scores=ones)
    y_rows, _ = local_dispatch(recv_x.reshape(X * C, D), local_routing, wg, wu, wd, valid, backend="blocks",
                               block=block)
    back = jax.lax.all_to_all(y_rows.reshape(X, C, D), EXPERT_AXIS, 0, 0)  # back[d]: what shard d computed
    out = jnp.where(keep[:, None], back[jnp.minimum(s_dest, X - 1), jnp.minimum(rank, C - 1)], 0)
    s_w = jnp.where(mask[:, None], weights, 0.0).reshape(-1)[order]
    y = jnp.zeros((n, D), jnp.float32).at[s_tok].add(out.astype(jnp.float32) * s_w[:, None])
    dropped = jax.lax.psum(jnp.sum((s_dest < X) & ~keep).astype(jnp.int32), token_axes)
    return y.astype(x.dtype), dropped

  rows, vec, experts_spec = P(token_axes, None), P(token_axes), P(EXPERT_AXIS, None, None)
  fn = jax.shard_map(local, mesh=mesh, in_specs=(rows, rows, rows, vec, experts_spec, experts_spec, experts_spec),
                     out_specs=(rows, P()), check_vma=False)
  return fn(x, routing.experts, routing.weights, token_mask, wg, wu, wd)
