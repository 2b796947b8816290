"""Host views of global arrays, the same on every process (multi-controller JAX).

One process: plain `jax.device_get`. Several: an array spanning other processes' devices cannot be
copied to this host directly, so it is all-gathered (`multihost_utils.process_allgather`, tiled:
the global value); a fully replicated one is read from a local copy. Every process must make the
same calls in the same order (they are collectives).
"""
from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def _host(x: Any) -> Any:
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return np.asarray(jax.device_get(x)) if isinstance(x, jax.Array) else x
  if x.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def host_get(tree: Any) -> Any:
  """`jax.device_get` that also works on arrays spanning several processes (the global value)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return jax.tree.map(_host, tree)


def allgather_rows(local: np.ndarray) -> np.ndarray:
  """Each process's host rows [n_p, ...] concatenated in process order (every process gets all)."""
  if jax.process_count() == 1:
    return np.asarray(local)
  return np.asarray(multihost_utils.process_allgather(np.asarray(local), tiled=True))


def allgather_objects(obj: Any) -> list:
  """Each process's JSON-serialisable `obj`, in process order (every process gets the list)."""
  if jax.process_count() == 1:
    return [obj]
  data = np.frombuffer(json.dumps(obj).encode("utf-8"), np.uint8)
  sizes = allgather_rows(np.array([data.size], np.int64))  # [P]
  buf = np.zeros((1, int(sizes.max())), np.uint8)
  buf[0, :data.size] = data
  rows = allgather_rows(buf)  # [P, max size]
  return [json.loads(bytes(rows[i, :int(sizes[i])]).decode("utf-8")) for i in range(len(sizes))]


def sync(name: str) -> None:
  """A barrier across processes (no-op with one)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
