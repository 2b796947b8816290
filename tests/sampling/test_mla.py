"""MLA: decode over the compressed latent cache (absorbed W_UK / W_UV) equals decode that re-expands
K/V from the cache; cache sizes for both layouts."""
import numpy as np
import pytest
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.models.transformer import Transformer, init_cache
from r1jax.sampling import Sampler, SamplingParams, cache_report
from tests.sampling.conftest import GQA_CFG, TEST_BUCKETS, random_model

MLA_CFG = ModelConfig(
    vocab_size=128, d_model=32, n_layers=2, n_heads=4, ffn_dim=64, attention="mla", q_lora_rank=24,
    kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, rope_interleave=True)
# (MLA with DeepSeek-V3 MoE against transformers is in test_hf_parity.py)
PROMPTS = [[3], [7, 8, 9, 10, 11, 12], list(range(40, 61))]


def with_cfg(model, cfg):
  """The same weights under another config (here: mla_absorb off)."""
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
  return nnx.merge(graphdef, nnx.state(model))


@pytest.fixture(scope="module")
def mla_model():
  return random_model(MLA_CFG, seed=1)


def test_latent_decode_equals_expanded_decode(mla_model):
  assert MLA_CFG.mla_absorb
  expanded = with_cfg(mla_model, MLA_CFG.replace(mla_absorb=False))
  sp = SamplingParams(temperature=0.0, max_new_tokens=12)
  s_lat, p_lat = Sampler.from_model(mla_model, buckets=TEST_BUCKETS)
  s_exp, p_exp = Sampler.from_model(expanded, buckets=TEST_BUCKETS)
  lat = s_lat.generate(p_lat, PROMPTS, sp)
  exp = s_exp.generate(p_exp, PROMPTS, sp)
  np.testing.assert_array_equal(lat.tokens, exp.tokens)
  np.testing.assert_allclose(lat.logprobs, exp.logprobs, atol=1e-5)
  # (latent decode against transformers' DeepSeek-V3, log-probs included: test_hf_parity.py)


def test_cache_holds_the_latent_and_reports_both_layouts():
  c = MLA_CFG
  layer = init_cache(c, 2, 5)["layers"][0]
  assert {k: v.shape for k, v in layer.items()} == {"c_kv": (2, 5, 16), "k_rope": (2, 5, 4)}
  rep = cache_report(c)
  assert rep["layout"] == "mla_latent"
  assert rep["bytes_per_token_per_layer"] == (c.kv_lora_rank + c.qk_rope_head_dim) * 4
  expanded = c.n_heads * ((c.qk_nope_head_dim + c.qk_rope_head_dim) + c.v_head_dim) * 4
  assert rep["expanded_kv_bytes_per_token_per_layer"] == expanded
  assert rep["compression"] == pytest.approx(expanded / ((16 + 4) * 4))
  g = cache_report(GQA_CFG)
  assert g == {"layout": "gqa_per_head", "bytes_per_token_per_layer": 2 * GQA_CFG.kv_heads * GQA_CFG.hd * 4}
  assert cache_report(GQA_CFG, "bfloat16")["bytes_per_token_per_layer"] == 2 * 2 * 8 * 2
