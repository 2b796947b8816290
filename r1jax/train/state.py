"""Train state, optimizer and the pieces every stage's step shares.

The model is split into (graphdef, params, extra): `params` are the nnx.Param leaves the optimizer
updates; `extra` is every other Variable (the DeepSeek router correction bias), updated by its own
rule from globally summed expert loads, never by the optimizer.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import NamedSharding, PartitionSpec as P

from r1jax.models.moe import update_router_bias


class TrainState(struct.PyTreeNode):
  step: jax.Array
  params: Any  # nnx.State of nnx.Param
  extra: Any  # nnx.State of the remaining Variables (router bias)
  opt_state: Any
  rng: jax.Array


def split_model(model: nnx.Module):
  """(graphdef, params, extra)."""
  return nnx.split(model, nnx.Param, ...)


def merge(graphdef, params, extra) -> nnx.Module:
  return nnx.merge(graphdef, params, extra)


def learning_rate_schedule(c: Mapping[str, Any]) -> optax.Schedule:
  lr, warmup, total = float(c["learning_rate"]), int(c.get("warmup_steps", 0)), int(c.get("total_steps", 1))
  kind = c.get("schedule", "cosine")
  if kind == "constant":
    return optax.join_schedules([optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)],
                                [max(warmup, 1)]) if warmup else optax.constant_schedule(lr)
  if kind == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(total, warmup + 1),
                                              end_value=lr * float(c.get("final_lr_fraction", 0.1)))
  raise ValueError(f"optim.schedule: unknown schedule {kind!r} (cosine, constant)")


def make_optimizer(c: Mapping[str, Any]) -> optax.GradientTransformation:
  """AdamW with warmup + cosine (or constant) and global-norm clipping, from an `optim` config."""
  return optax.chain(
      optax.clip_by_global_norm(float(c.get("grad_clip", 1.0))),
      optax.adamw(learning_rate_schedule(c), b1=float(c.get("b1", 0.9)), b2=float(c.get("b2", 0.95)),
                  eps=float(c.get("eps", 1e-8)), weight_decay=float(c.get("weight_decay", 0.0))),
  )


def optimizer_shardings(tx: optax.GradientTransformation, params):
  """Shardings of `tx.init(params)`: every params-shaped leaf (Adam's mu, nu) on its parameter's
  sharding, the rest (step counts) replicated. Without this, jit places the zeros of the optimizer
  state wherever it likes (one device): the state is built from no input data."""
  leaves = jax.tree.leaves(params)
  named = [x.sharding for x in leaves if isinstance(getattr(x, "sharding", None), NamedSharding)]
  if not named:
    return None
  replicated = NamedSharding(named[0].mesh, P())
  shardings = jax.tree.map(lambda x: x.sharding if isinstance(x.sharding, NamedSharding) else replicated, params)
  abstract = jax.eval_shape(tx.init, params)
  return optax.tree_map_params(tx, lambda _, s: s, abstract, shardings,
                               transform_non_params=lambda _: replicated)


def init_train_state(params, extra, tx: optax.GradientTransformation, seed: int = 0) -> TrainState:
  opt_state = jax.jit(tx.init, out_shardings=optimizer_shardings(tx, params))(params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, extra=extra, opt_state=opt_state,
                    rng=jax.random.key_data(jax.random.key(seed)))


def update_router_biases(graphdef, params, extra, loads: jax.Array, rate: float):
  """Aux-loss-free balancing of every MoE layer's correction bias from its [E] load counts.

  loads: [n_moe_layers, E] summed over the whole global batch (what the model's aux returns
  inside a jitted step over global arrays).
  """
  if rate == 0 or loads.shape[0] == 0:
    return extra
  model = nnx.merge(graphdef, params, extra)
  for k, i in enumerate(model.cfg.moe_layer_ids):
    b = model.layers[i].mlp.e_score_correction_bias
    if b is not None:
      b[...] = update_router_bias(b[...], loads[k], rate)
  _, _, new_extra = nnx.split(model, nnx.Param, ...)
  return new_extra


def apply_gradients(state: TrainState, grads, tx: optax.GradientTransformation):
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), optax.tree.norm(grads)


def microbatches(batch: Mapping[str, jax.Array], n: int) -> dict[str, jax.Array]:
  """[B, ...] -> [n, B/n, ...] for a scan over gradient-accumulation steps. Micro-batch k holds
  rows k, n + k, 2n + k, ...: strided, so a batch sharded in contiguous blocks over the devices
  gives every micro-batch rows on every device (no resharding, no idle devices)."""
  def split(x):
    if x.shape[0] % n:
      raise ValueError(f"batch size {x.shape[0]} is not divisible into {n} micro-batches")
    return x.reshape((x.shape[0] // n, n) + x.shape[1:]).swapaxes(0, 1)
  return {k: split(v) for k, v in batch.items()}


def micro_batch_count(rows: int, micro_batch_size: int, what: str) -> int:
  """How many micro-batches of `micro_batch_size` rows `rows` makes (1 for size 0 or >= rows);
  an error naming `what` when the size does not divide them."""
  if not micro_batch_size or micro_batch_size >= rows:
    return 1
  if rows % micro_batch_size:
    raise ValueError(f"{what}: {rows} rows do not split into micro-batches of {micro_batch_size}")
  return rows // micro_batch_size


def router_load_shape(graphdef, params, extra) -> tuple[int, int]:
  """[MoE layers, routed experts] of the model's router load counts (aux["load"])."""
  mcfg = merge(graphdef, params, extra).cfg
  return len(mcfg.moe_layer_ids), max(mcfg.n_routed_experts, 1)


def accumulate_gradients(micro_step, params, mbs: Mapping[str, jax.Array], load_shape: tuple[int, int]):
  """A scan of `micro_step(mb) -> (value, router load, aux, grads)` over micro-batches `mbs`
  ([n, ...] each, from `microbatches`): (summed values, summed grads, summed loads, aux stacked
  [n, ...]). The losses must already carry the whole batch's normalisers."""
  def body(carry, mb):
    value_sum, grads, loads = carry
    value, load, aux, g = micro_step(mb)
    return (value_sum + value, jax.tree.map(jnp.add, grads, g), loads + load), aux

  zeros = (jnp.float32(0), jax.tree.map(jnp.zeros_like, params), jnp.zeros(load_shape, jnp.float32))
  (value, grads, loads), aux = jax.lax.scan(body, zeros, mbs)
  return value, grads, loads, aux


def unmicrobatch(x: jax.Array) -> jax.Array:
  """The inverse of `microbatches` for one array: [n, B/n, ...] -> [B, ...]."""
  return x.swapaxes(0, 1).reshape((x.shape[0] * x.shape[1],) + x.shape[2:])
