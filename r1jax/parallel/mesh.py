"""Device meshes from config: axes (data, fsdp, expert, tensor), Auto axis types, -1 = fill.

Auto (not Explicit) axes: jax 0.10's default Explicit mesh rejects the NNX train step's gathers.
"""
from __future__ import annotations

import logging
import math
from typing import Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

AXES = ("data", "fsdp", "expert", "tensor")
log = logging.getLogger(__name__)


def resolve_shape(shape: Mapping[str, int], n_devices: int, what: str = "mesh") -> tuple[int, ...]:
  """Fills one -1 axis so the product equals n_devices; errors name the axes and sizes."""
  unknown = set(shape) - set(AXES)
  if unknown:
    raise ValueError(f"{what}: unknown axis {sorted(unknown)}; axes are {AXES}")
  sizes = [int(shape.get(a, 1)) for a in AXES]
  fill = [a for a, s in zip(AXES, sizes) if s == -1]
  if len(fill) > 1:
    raise ValueError(f"{what}: only one axis may be -1, got {fill}")
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"{what}: axis sizes must be positive or -1, got {dict(zip(AXES, sizes))}")
  known = math.prod(s for s in sizes if s != -1)
  if fill:
    if n_devices % known:
      raise ValueError(f"{what}: {n_devices} devices are not divisible by the fixed axes "
                       f"{dict(zip(AXES, sizes))} (product {known})")
    sizes[AXES.index(fill[0])] = n_devices // known
  if math.prod(sizes) != n_devices:
    raise ValueError(f"{what}: axes {dict(zip(AXES, sizes))} need {math.prod(sizes)} devices, "
                     f"but {n_devices} are available")
  return tuple(sizes)


def make_mesh(shape: Mapping[str, int] | Sequence[int] | None = None, *, devices=None,
              dcn_shape: Optional[Mapping[str, int]] = None) -> Mesh:
  """A mesh over all (or the given) devices. `dcn_shape` makes a hybrid ICI x DCN mesh (multi-slice):
  `shape` is then the per-slice (ICI) shape and the full axis size is ici * dcn."""
  devices = list(jax.devices() if devices is None else devices)
  if shape is None:
    shape = {"fsdp": -1}
  if not isinstance(shape, Mapping):
    shape = dict(zip(AXES, shape))
  if dcn_shape:
    from jax.experimental import mesh_utils

    dcn = resolve_shape(dcn_shape, len({getattr(d, "slice_index", 0) for d in devices}), "dcn_shape")
    ici = resolve_shape(shape, len(devices) // math.prod(dcn), "ici shape")
    arr = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
  else:
    sizes = resolve_shape(shape, len(devices))
    try:
      from jax.experimental import mesh_utils

      arr = mesh_utils.create_device_mesh(sizes, devices)
    except Exception:  # CPU / odd topologies: plain reshape is fine
      arr = np.array(devices).reshape(sizes)
  return Mesh(arr, AXES, axis_types=(AxisType.Auto,) * len(AXES))


def init_distributed(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                     process_id: Optional[int] = None, local_device_ids: Optional[list[int]] = None) -> None:
  """Multi-host: plain JAX multi-controller. On TPU VMs all arguments are discovered automatically;
  under SLURM too, except that JAX then gives each process only GPU $SLURM_LOCALID:
  `local_device_ids` (or JAX_LOCAL_DEVICE_IDS) lets one process per node drive all its GPUs."""
  if num_processes is not None and num_processes <= 1:
    return
  if jax.distributed.is_initialized():
    return
  kwargs = {k: v for k, v in dict(coordinator_address=coordinator_address, num_processes=num_processes,
                                     process_id=process_id, local_device_ids=local_device_ids).items()
            if v is not None}
  jax.distributed.initialize(**kwargs)
  log.info("jax.distributed: process %d of %d, %d global devices", jax.process_index(),
           jax.process_count(), jax.device_count())
