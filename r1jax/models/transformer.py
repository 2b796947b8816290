"""The decoder: embedding -> [RMSNorm, attention, RMSNorm, MLP or MoE] x L -> RMSNorm -> LM head.

`Transformer.__call__` covers training (segment ids + positions, packed documents never attend
across each other) and cached decoding (a KV cache pytree in, the updated one out).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from r1jax.models.attention import GQAAttention, MLAttention, write_rows
from r1jax.models.config import ModelConfig
from r1jax.models.layers import KeySeq, RMSNorm, SwiGLU, dtype_of, param
from r1jax.models.moe import MoE
from r1jax.parallel.sharding import constrain_batch


class ModelOutput(NamedTuple):
  logits: Optional[jax.Array]  # [B, T, V] fp32, None when only hidden states were asked for
  hidden: jax.Array  # [B, T, D] after the final norm
  cache: Optional[dict]
  aux: dict  # load [n_moe_layers, E], balance (scalar), dropped (scalar)


class Block(nnx.Module):
  def __init__(self, cfg: ModelConfig, layer: int, *, rngs: nnx.Rngs):
    self.input_layernorm = RMSNorm(cfg.d_model, cfg, rngs=rngs)
    self.self_attn = (MLAttention if cfg.attention == "mla" else GQAAttention)(cfg, rngs=rngs)
    self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg, rngs=rngs)
    self.is_moe = cfg.is_moe_layer(layer)
    self.mlp = MoE(cfg, rngs=rngs) if self.is_moe else SwiGLU(cfg, cfg.ffn_dim, rngs=rngs)

  def __call__(self, x, positions, segment_ids, cache, cache_pos, write_index):
    h, cache = self.self_attn(self.input_layernorm(x), positions, segment_ids, cache, cache_pos, write_index)
    x = x + h
    h = self.post_attention_layernorm(x)
    if self.is_moe:
      h, aux = self.mlp(h, segment_ids > 0)
    else:
      h, aux = self.mlp(h), None
    return x + h, cache, aux


def _remat_policy(name: str):
  return {"full": None, "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims}[name]


class Transformer(nnx.Module):
  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    pd = dtype_of(cfg.param_dtype)
    rngs = KeySeq(rngs.params()) if isinstance(rngs, nnx.Rngs) else rngs
    self.embed_tokens = param(rngs, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), pd, cfg.init_std)
    self.layers = nnx.List([Block(cfg, i, rngs=rngs) for i in range(cfg.n_layers)])
    self.norm = RMSNorm(cfg.d_model, cfg, rngs=rngs)
    self.lm_head = None if cfg.tie_embeddings else param(
        rngs, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), pd, cfg.init_std)

  def head_kernel(self) -> jax.Array:
    """[D, V] output projection (the embedding transposed when tied)."""
    return self.embed_tokens[...].T if self.lm_head is None else self.lm_head[...]

  def logits(self, hidden) -> jax.Array:
    return jnp.einsum("btd,dv->btv", hidden, self.head_kernel().astype(hidden.dtype),
                      preferred_element_type=jnp.float32)

  def __call__(self, tokens, positions=None, segment_ids=None, *, cache=None, write_index=None,
               return_logits: bool = True) -> ModelOutput:
    """tokens: [B, T] int32. positions default to arange; segment_ids to ones (0 = padding).

    With `cache` (from `init_cache`), the T new tokens are written at [write_index, write_index+T)
    of each row and attend to everything cached at positions <= their own.
    """
    cfg = self.cfg
    B, T = tokens.shape
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    if segment_ids is None:
      segment_ids = jnp.ones((B, T), jnp.int32)
    x = constrain_batch(jnp.take(self.embed_tokens[...], tokens, axis=0).astype(dtype_of(cfg.dtype)))
    cache_pos = None
    new_layers = []
    if cache is not None:
      if write_index is None:
        raise ValueError("a cache needs write_index [B]")
      cache_pos = write_rows(cache["pos"], jnp.where(segment_ids > 0, positions, -1), write_index)
    loads, balance, dropped = [], jnp.float32(0), jnp.int32(0)
    for i, block in enumerate(self.layers):
      layer_cache = cache["layers"][i] if cache is not None else None
      if cfg.remat != "none":
        call = nnx.remat(lambda b, *a: b(*a), policy=_remat_policy(cfg.remat))
        x, layer_cache, aux = call(block, x, positions, segment_ids, layer_cache, cache_pos, write_index)
      else:
        x, layer_cache, aux = block(x, positions, segment_ids, layer_cache, cache_pos, write_index)
      x = constrain_batch(x)
      new_layers.append(layer_cache)
      if aux is not None:
        loads.append(aux["load"])
        balance = balance + aux["balance"]
        dropped = dropped + aux["dropped"]
    hidden = self.norm(x)
    aux = {"load": jnp.stack(loads) if loads else jnp.zeros((0, max(cfg.n_routed_experts, 1)), jnp.float32),
           "balance": balance, "dropped": dropped}
    new_cache = {"pos": cache_pos, "layers": tuple(new_layers)} if cache is not None else None
    return ModelOutput(self.logits(hidden) if return_logits else None, hidden, new_cache, aux)


def cache_shapes(cfg: ModelConfig, batch: int, length: int) -> dict[str, Any]:
  attn = MLAttention if cfg.attention == "mla" else GQAAttention
  return {"pos": (batch, length), "layers": tuple(attn.cache_shapes(cfg, batch, length) for _ in range(cfg.n_layers))}


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=None) -> dict:
  """An empty cache: every slot's position is -1 (empty). dtype defaults to the activation dtype."""
  dt = dtype_of(cfg.dtype) if dtype is None else dtype
  shapes = cache_shapes(cfg, batch, length)
  return {"pos": jnp.full(shapes["pos"], -1, jnp.int32),
          "layers": tuple({k: jnp.zeros(s, dt) for k, s in layer.items()} for layer in shapes["layers"])}


def cache_bytes_per_token_per_layer(cfg: ModelConfig, dtype=None) -> int:
  """KV bytes one token occupies in one layer: GQA 2*K*hd; MLA latent kv_lora + rope."""
  dt = dtype_of(cfg.dtype) if dtype is None else jnp.dtype(dtype)
  per = sum(s[-1] * (s[-2] if len(s) == 4 else 1) for s in cache_shapes(cfg, 1, 1)["layers"][0].values())
  return int(per * dt.itemsize)
