"""Sharding on 8 virtual CPU devices: rule-driven specs, sharded == unsharded, clear errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from r1jax.models.config import ModelConfig
from r1jax.models.presets import get_preset
from r1jax.models.sharded import create_sharded_model
from r1jax.models.transformer import Transformer
from r1jax.parallel import sharding as shd
from r1jax.parallel.mesh import make_mesh, resolve_shape

CFG = get_preset("tiny_moe").replace(vocab_size=256, n_layers=2)


@pytest.fixture(scope="module")
def mesh(devices8):
  return make_mesh({"data": 2, "fsdp": 2, "expert": 2, "tensor": 1})


@pytest.fixture(scope="module")
def tp_mesh(devices8):
  return make_mesh({"data": 1, "fsdp": 2, "expert": 2, "tensor": 2})


def test_specs_follow_the_rules(tp_mesh):
  model = create_sharded_model(CFG, tp_mesh)
  state = nnx.state(model)
  n = 0
  for path, v in jax.tree_util.tree_flatten_with_path(state, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]:
    axes = v.get_metadata()["axes"]
    expected = shd.logical_to_spec(axes)
    assert v[...].sharding.spec == expected, (path, axes)
    n += 1
  assert n > 20
  assert model.layers[1].mlp.w_gate[...].sharding.spec == P("expert", "fsdp", "tensor")
  assert model.embed_tokens[...].sharding.spec == P("tensor", "fsdp")
  assert model.layers[0].self_attn.q_b_proj.kernel[...].sharding.spec == P(None, "tensor", None)
  # created sharded: every device holds only its shard
  w = model.layers[1].mlp.w_gate[...]
  assert {s.data.shape for s in w.addressable_shards} == {(4, 96, 64)}


def _batch():
  rng = np.random.default_rng(0)
  tok = jnp.asarray(rng.integers(0, 256, (8, 16)))
  seg = jnp.asarray((np.arange(16)[None] < rng.integers(8, 17, (8, 1))).astype(np.int32))
  return tok, seg


def _loss(st, g, tok, seg):
  out = nnx.merge(g, st)(tok, segment_ids=seg)
  lp = jax.nn.log_softmax(out.logits)
  return -(jnp.take_along_axis(lp[:, :-1], tok[:, 1:, None], -1)[..., 0] * seg[:, 1:]).mean()


@pytest.fixture(scope="module")
def unsharded_reference():
  g, st = nnx.split(Transformer(CFG, rngs=nnx.Rngs(3)))
  tok, seg = _batch()
  return jax.jit(jax.value_and_grad(lambda s: _loss(s, g, tok, seg)))(st)


@pytest.mark.parametrize("which", ["mesh", "tp_mesh"])
def test_sharded_forward_and_grad_equal_unsharded(which, request, unsharded_reference):
  mesh = request.getfixturevalue(which)
  g, st = nnx.split(create_sharded_model(CFG, mesh, seed=3))
  tok, seg = _batch()
  with jax.set_mesh(mesh):
    tok = jax.device_put(tok, shd.batch_sharding(mesh))
    seg = jax.device_put(seg, shd.batch_sharding(mesh))
    assert tok.sharding.spec == P(("data", "fsdp", "expert"), None)
    l1, g1 = jax.jit(jax.value_and_grad(lambda s: _loss(s, g, tok, seg)))(st)
  l0, g0 = unsharded_reference
  np.testing.assert_allclose(float(l0), float(l1), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_mesh_errors(devices8):
  with pytest.raises(ValueError, match=r"need 12 devices, but 8 are available"):
    make_mesh({"data": 3, "fsdp": 4})
  with pytest.raises(ValueError, match="unknown axis"):
    make_mesh({"model": 8})
  with pytest.raises(ValueError, match="not divisible"):
    resolve_shape({"data": 3, "fsdp": -1}, 8)
  assert resolve_shape({"data": 2, "fsdp": -1}, 8) == (2, 4, 1, 1)
  assert dict(make_mesh({"expert": -1}).shape) == {"data": 1, "fsdp": 1, "expert": 8, "tensor": 1}


def test_indivisible_dimension_names_param_axis_and_sizes(tp_mesh):
  cfg = CFG.replace(vocab_size=255)
  with pytest.raises(ValueError, match=r"embed_tokens: dimension 0 of size 255 is not divisible by mesh axis tensor of size 2"):
    create_sharded_model(cfg, tp_mesh)


def test_rules_reject_a_mesh_axis_used_twice():
  rules = {**shd.RULES, "mlp": "fsdp"}
  with pytest.raises(ValueError, match=r"mesh axis 'fsdp' used twice"):
    shd.logical_to_spec(("embed", "mlp"), rules, "w")
  with pytest.raises(KeyError, match="no sharding rule"):
    shd.logical_to_spec(("bogus",), rules, "w")
