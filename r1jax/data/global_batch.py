"""Per-process numpy batches -> global jax.Arrays on the mesh (batch dim over the data axes).

Each process feeds its own rows; `jax.make_array_from_process_local_data` stitches them into one
global array whose leading dimension is sharded over ('data', 'fsdp', 'expert') — the axes the
trainer splits the batch over. Only numeric arrays become global; lists (prompt ids of varying
length, answers, metadata) stay host-side Python objects.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from r1jax.parallel.sharding import BATCH_AXES


def batch_axes_of(mesh: Mesh, batch_axes: Sequence[str] = BATCH_AXES) -> tuple[str, ...]:
  """The batch axes this mesh actually has (a data-only mesh has just 'data')."""
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  if not axes:
    raise ValueError(f"mesh axes {mesh.axis_names} contain none of the batch axes "
                     f"{tuple(batch_axes)}")
  return axes


def batch_spec(mesh: Mesh, ndim: int, batch_axes: Sequence[str] = BATCH_AXES) -> P:
  """P((batch axes), None, …) for an array of rank `ndim`."""
  return P(batch_axes_of(mesh, batch_axes), *([None] * (ndim - 1)))


def _is_numeric(x: Any) -> bool:
  return isinstance(x, np.ndarray) and x.ndim >= 1 and x.dtype.kind in "biuf"


def to_global(batch: Mapping[str, Any], mesh: Mesh, spec: P | Mapping[str, P] | None = None,
              batch_axes: Sequence[str] = BATCH_AXES,
              process_count: int | None = None) -> dict[str, Any]:
  """Makes every numeric [B_local, …] array of `batch` a global [B_local * processes, …] array.

  `spec`: one PartitionSpec for all arrays, a {key: spec} mapping, or None for the batch dim over
  the mesh's batch axes. Non-numeric values (lists, dicts, strings) are passed through unchanged.
  """
  nproc = jax.process_count() if process_count is None else process_count
  out: dict[str, Any] = {}
  for key, value in batch.items():
    if not _is_numeric(value):
      out[key] = value
      continue
    if isinstance(spec, Mapping):
      s = spec.get(key, batch_spec(mesh, value.ndim, batch_axes))
    else:
      s = spec if spec is not None else batch_spec(mesh, value.ndim, batch_axes)
    global_shape = (value.shape[0] * nproc,) + value.shape[1:]
    _check_divisible(key, global_shape, mesh, s)
    out[key] = jax.make_array_from_process_local_data(NamedSharding(mesh, s), value, global_shape)
  return out


def _check_divisible(key: str, shape: tuple[int, ...], mesh: Mesh, spec: P) -> None:
  for dim, axes in enumerate(spec):
    if axes is None:
      continue
    names = (axes,) if isinstance(axes, str) else tuple(axes)
    ways = math.prod(mesh.shape[a] for a in names)
    if shape[dim] % ways:
      sizes = ", ".join(f"{a}={mesh.shape[a]}" for a in names)
      raise ValueError(f"batch[{key!r}]: global dim {dim} of size {shape[dim]} is not divisible by "
                       f"the {ways} shards of mesh axes ({sizes}); change the batch size")
