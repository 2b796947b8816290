"""Decoder invariants: packing, KV cache, MLA absorbed form, remat, dtype policy, config errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.models.transformer import Transformer, cache_bytes_per_token_per_layer, init_cache

DENSE = ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, qkv_bias=True,
                    qk_norm=True)
MLA_MOE = ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=2, ffn_dim=64, attention="mla",
                      q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                      rope_interleave=True, n_routed_experts=4, n_experts_per_tok=2, moe_ffn_dim=16,
                      n_shared_experts=1, first_k_dense=1, router_score="sigmoid", router_bias=True)


def _fwd(model):
  g, st = nnx.split(model)
  return jax.jit(lambda st, *a, **k: nnx.merge(g, st)(*a, **k), static_argnames=()), st


@pytest.mark.parametrize("cfg", [DENSE, MLA_MOE], ids=["gqa", "mla_moe"])
def test_packed_segments_equal_separate_sequences(cfg):
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  f, st = _fwd(model)
  rng = np.random.default_rng(0)
  a, b = rng.integers(0, 97, 5), rng.integers(0, 97, 7)
  packed = np.concatenate([a, b, [0, 0]])[None]
  seg = np.array([[1] * 5 + [2] * 7 + [0, 0]])
  pos = np.array([list(range(5)) + list(range(7)) + [0, 0]])
  out = f(st, jnp.asarray(packed), jnp.asarray(pos), jnp.asarray(seg)).logits[0]
  la = f(st, jnp.asarray(a[None])).logits[0]
  lb = f(st, jnp.asarray(b[None])).logits[0]
  np.testing.assert_allclose(np.asarray(out[:5]), np.asarray(la), atol=1e-5)
  np.testing.assert_allclose(np.asarray(out[5:12]), np.asarray(lb), atol=1e-5)
  assert np.all(np.isfinite(np.asarray(out)))  # padding rows give finite values, never NaN


@pytest.mark.parametrize("cfg", [DENSE, MLA_MOE, MLA_MOE.replace(mla_absorb=False)], ids=["gqa", "mla_latent", "mla_expanded"])
def test_cached_prefill_and_decode_equal_full_forward(cfg):
  model = Transformer(cfg, rngs=nnx.Rngs(1))
  f, st = _fwd(model)
  tok = jnp.asarray(np.random.default_rng(1).integers(0, 97, (2, 9)))
  full = f(st, tok).logits
  cache = init_cache(cfg, 2, 16)
  out = f(st, tok[:, :6], cache=cache, write_index=jnp.zeros(2, jnp.int32))
  got = [out.logits]
  cache = out.cache
  for t in range(6, 9):
    pos = jnp.full((2, 1), t, jnp.int32)
    out = f(st, tok[:, t:t + 1], pos, cache=cache, write_index=jnp.full((2,), t, jnp.int32))
    cache = out.cache
    got.append(out.logits)
  np.testing.assert_allclose(np.asarray(jnp.concatenate(got, 1)), np.asarray(full), atol=2e-5)


def test_cache_layouts_and_bytes():
  c = init_cache(MLA_MOE, 3, 8)
  assert set(c["layers"][0]) == {"c_kv", "k_rope"} and c["layers"][0]["c_kv"].shape == (3, 8, 16)
  assert cache_bytes_per_token_per_layer(MLA_MOE) == (16 + 4) * 4
  assert cache_bytes_per_token_per_layer(DENSE) == 2 * 2 * 8 * 4
  # DeepSeek-V3 shapes: latent 512 + rope 64 vs. expanded 128 heads x (192 + 128)
  from r1jax.models.presets import get_preset

  v3 = get_preset("deepseek-v3")
  assert cache_bytes_per_token_per_layer(v3) == (512 + 64) * 2


def test_remat_changes_nothing():
  tok = jnp.asarray(np.random.default_rng(2).integers(0, 97, (2, 8)))
  grads = []
  for remat in ("none", "full", "dots"):
    model = Transformer(MLA_MOE.replace(remat=remat), rngs=nnx.Rngs(0))
    g, st = nnx.split(model)
    loss = lambda st: nnx.merge(g, st)(tok).logits.sum() ** 2 * 1e-6
    grads.append(jax.jit(jax.grad(loss))(st))
  for other in grads[1:]:
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(other)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_bf16_policy_keeps_router_and_logits_fp32():
  cfg = MLA_MOE.replace(param_dtype="bfloat16", dtype="bfloat16")
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  assert model.layers[1].mlp.gate[...].dtype == jnp.float32  # router stays fp32
  assert model.layers[1].mlp.w_gate[...].dtype == jnp.bfloat16
  out = model(jnp.ones((1, 4), jnp.int32))
  assert out.logits.dtype == jnp.float32 and out.hidden.dtype == jnp.bfloat16
  ref = Transformer(MLA_MOE, rngs=nnx.Rngs(0))(jnp.ones((1, 4), jnp.int32)).logits
  assert float(jnp.abs(out.logits - ref).max()) < 0.05


@pytest.mark.parametrize("field,kw", [
    ("n_kv_heads", dict(n_kv_heads=3)),
    ("n_group", dict(n_routed_experts=6, n_experts_per_tok=2, moe_ffn_dim=8, n_group=4)),
    ("moe_ffn_dim", dict(n_routed_experts=4, n_experts_per_tok=2)),
    ("kv_lora_rank", dict(attention="mla")),
    ("attention_impl", dict(attention_impl="flash")),
    ("attention_impl", dict(attention_impl="cudnn")),  # fp32: the cuDNN kernel needs bf16/fp16
    ("attention_impl", dict(attention_impl="cudnn", dtype="bfloat16", attention="mla", kv_lora_rank=8,
                            qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=4)),
])
def test_config_errors_name_the_field(field, kw):
  with pytest.raises(ValueError, match=f"ModelConfig.{field}"):
    ModelConfig(vocab_size=10, d_model=16, n_layers=1, n_heads=4, ffn_dim=8, **kw)
