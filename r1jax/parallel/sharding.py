"""Logical axis names -> mesh axes: ONE rules table, checked, and sharded module creation.

Every parameter carries `axes` metadata (e.g. ("embed", "vocab")). `RULES` maps each logical name
to a mesh axis (or a tuple of them, or None). A spec may not use a mesh axis twice, and every
sharded dimension must be divisible by its mesh axes; errors name the parameter, axis and sizes.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Sequence

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp", "expert")

RULES: dict[str, Optional[str | tuple[str, ...]]] = {
    "batch": BATCH_AXES,
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "mlp": "tensor",
    "moe_mlp": "tensor",
    "experts": "expert",
    "q_lora": None,
    "kv_lora": None,
    "router": None,
    "norm": None,
}


def logical_to_spec(axes: Sequence[Optional[str]], rules: Mapping = RULES, where: str = "") -> P:
  spec, used = [], set()
  for name in axes:
    if name is None:
      spec.append(None)
      continue
    if name not in rules:
      raise KeyError(f"{where}: logical axis {name!r} has no sharding rule; known: {sorted(rules)}")
    m = rules[name]
    ms = () if m is None else (m,) if isinstance(m, str) else tuple(m)
    for a in ms:
      if a in used:
        raise ValueError(f"{where}: mesh axis {a!r} used twice in spec for logical axes {tuple(axes)}")
      used.add(a)
    spec.append(None if not ms else ms[0] if len(ms) == 1 else ms)
  return P(*spec)


def check_divisible(shape, spec: P, mesh: Mesh, where: str = "") -> None:
  for dim, (size, entry) in enumerate(zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)))):
    if entry is None:
      continue
    names = (entry,) if isinstance(entry, str) else tuple(entry)
    n = math.prod(mesh.shape[a] for a in names)
    if size % n:
      raise ValueError(f"{where}: dimension {dim} of size {size} is not divisible by mesh axis "
                       f"{'x'.join(names)} of size {n} (mesh {dict(mesh.shape)})")


def _is_var(x):
  return isinstance(x, nnx.Variable)


def state_shardings(state, mesh: Mesh, rules: Mapping = RULES):
  """NamedShardings for every Variable of `state`, checking divisibility."""
  def one(path, v):
    axes = v.get_metadata().get("axes")
    where = "/".join(str(getattr(k, "key", k)) for k in path)
    spec = P() if axes is None else logical_to_spec(axes, rules, where)
    check_divisible(v.shape, spec, mesh, where)
    return NamedSharding(mesh, spec)
  return jax.tree_util.tree_map_with_path(one, state, is_leaf=_is_var)


def batch_spec(ndim: int = 2) -> P:
  return P(BATCH_AXES, *([None] * (ndim - 1)))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  return NamedSharding(mesh, batch_spec(ndim))


def create_sharded(make: Callable[[], nnx.Module], mesh: Mesh, rules: Mapping = RULES) -> nnx.Module:
  """Builds the module with every parameter created directly in its sharding (one jitted init;
  nothing is ever materialised whole on one device)."""
  abstract = nnx.eval_shape(make)
  graphdef, abs_state = nnx.split(abstract)
  shardings = state_shardings(abs_state, mesh, rules)
  out = jax.tree.map(lambda v, s: s, abs_state, shardings, is_leaf=_is_var)

  @jax.jit
  def init():
    return nnx.state(make())

  with jax.set_mesh(mesh):
    state = jax.jit(init, out_shardings=out)()
  return nnx.merge(graphdef, state)


def constrain_batch(x: jax.Array) -> jax.Array:
  """Activation constraint at block boundaries: batch over (data, fsdp, expert), rest replicated.

  A no-op outside a mesh context (`jax.set_mesh`) or when the batch does not divide the axes
  (e.g. decoding a single row), so model code can call it unconditionally.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names and mesh.shape[a] > 1)
  if not axes or x.shape[0] % math.prod(mesh.shape[a] for a in axes):
    return x
  return jax.lax.with_sharding_constraint(x, P(axes, *([None] * (x.ndim - 1))))
