"""Generate on the trainer's sharded arrays (8 virtual devices, batch over data x fsdp x expert)
equals unsharded generate; the cache and decode state stay batch-sharded."""
import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from r1jax.models.config import ModelConfig
from r1jax.parallel.mesh import make_mesh
from r1jax.parallel.sharding import state_shardings
from r1jax.sampling import Sampler, SamplingParams
from tests.sampling.conftest import TEST_BUCKETS, random_model

MOE_CFG = ModelConfig(vocab_size=128, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
                      head_dim=8, qk_norm=True, n_routed_experts=4, n_experts_per_tok=2, moe_ffn_dim=16,
                      dense_layers=(0,))  # one dense, one MoE layer (MoE layers are slow to compile)
PROMPTS = [[3], [7, 8, 9, 10, 11, 12], list(range(40, 61)), [1, 2], [100] * 9]
LIMITS = [12, 3, 2, 12, 4]


@pytest.fixture(scope="module")
def models(devices8):
  model = random_model(MOE_CFG, seed=2)
  graphdef, state = nnx.split(model)
  mesh = make_mesh({"data": 2, "fsdp": 2, "expert": 2, "tensor": 1})
  sharded = jax.device_put(state, state_shardings(state, mesh))  # as the trainer holds them
  return graphdef, state, sharded, mesh


def test_sharded_generate_equals_unsharded(models):
  graphdef, state, sharded, mesh = models
  assert len(jax.tree.leaves(sharded)[0].sharding.device_set) == 8
  assert sharded["layers"][1]["mlp"]["w_gate"].sharding.spec == P("expert", "fsdp", "tensor")
  sampler = Sampler(graphdef, MOE_CFG, buckets=TEST_BUCKETS)  # mesh found from the params
  sp = SamplingParams(temperature=0.0, max_new_tokens=12)
  ref = sampler.generate(state, PROMPTS, sp, max_new_tokens_per_prompt=LIMITS)
  assert ref.stats["cache_spec"] is None
  out = sampler.generate(sharded, PROMPTS, sp, max_new_tokens_per_prompt=LIMITS)
  np.testing.assert_array_equal(out.tokens, ref.tokens)
  np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-5)
  batch = P(("data", "fsdp", "expert"))
  assert out.stats["cache_spec"] == batch and out.stats["state_spec"] == batch
  # slot refill on the mesh (3 slots -> 8, the batch shard count) gives the same rows
  refill = sampler.generate(sharded, PROMPTS * 2, sp, max_new_tokens_per_prompt=LIMITS * 2, num_slots=3,
                            refill=True)
  assert refill.stats["slots"] == 8
  np.testing.assert_array_equal(refill.tokens[:5], ref.tokens)
  np.testing.assert_array_equal(refill.tokens[5:], ref.tokens)
  np.testing.assert_allclose(refill.logprobs[5:], ref.logprobs, atol=1e-5)
