"""The optimizer state lives on its parameters' shardings, and the memory plan reads it so.

Built from zeros, Adam's moments depend on no input data, so a bare `jax.jit(tx.init)` put the
whole state on one device; `init_train_state` now places every params-shaped leaf like its param.
"""
import math
import os
import sys

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _device_bytes(tree) -> int:
  return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def test_adam_moments_are_sharded_like_the_parameters(devices8):
  from r1jax.models.presets import get_preset
  from r1jax.models.sharded import create_sharded_model
  from r1jax.parallel.mesh import make_mesh
  from r1jax.train.state import init_train_state, make_optimizer, split_model

  mesh = make_mesh({"fsdp": 2, "expert": 4})
  _, params, extra = split_model(create_sharded_model(get_preset("tiny_moe", n_layers=2), mesh))
  state = init_train_state(params, extra, make_optimizer({"learning_rate": 1e-3, "total_steps": 10}))
  adam = state.opt_state[1][0]
  for moments in (adam.mu, adam.nu):
    for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(moments), strict=True):
      assert m.sharding == p.sharding
  assert adam.count.sharding.spec == jax.sharding.PartitionSpec()
  assert _device_bytes(state.opt_state) == pytest.approx(2 * _device_bytes(params), rel=1e-3)


def test_plan_counts_the_all_to_all_of_expert_parallel_dispatch(devices8):
  sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
  try:
    import plan
  finally:
    sys.path.pop(0)
  from r1jax.models.presets import get_preset
  from r1jax.parallel.mesh import make_mesh

  assert plan.count_ops("%a = (f32[2], /*index=1*/f32[2]) all-gather(x)\n%b = f32[2] all-gather-start(y)\n"
                        "%c = f32[2] get-tuple-element(%all-gather), index=0\n", "all-gather") == 2
  mesh = make_mesh({"expert": 8})
  cfg = get_preset("tiny_moe", n_layers=2, moe_backend="alltoall")
  row = plan.plan_update(cfg, mesh, rows=8, seq=32, micro_batch=0, chunk=32)
  assert row["all_to_all_ops"] > 0
  assert row["bytes_per_device_opt"] == pytest.approx(2 * row["bytes_per_device_params"], rel=1e-2)
  assert row["bytes_per_device_temp"] > 0 and row["compile_s"] > 0
