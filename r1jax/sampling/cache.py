"""KV caches for the sampler: creation (sharded with the batch), row replacement, size report.

Layout per row (one sequence per row): slots [0, P) hold the right-padded prompt (padding slots
have position -1, i.e. are never attended); decode token t of the row is written at slot P + t.
GQA caches per-KV-head K and V; MLA caches the compressed latent (c_kv after its norm, and the
roped k_rope), which the absorbed attention reads directly (see r1jax/models/attention.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax.models.config import ModelConfig
from r1jax.models.transformer import cache_bytes_per_token_per_layer, init_cache


def empty_cache(cfg: ModelConfig, batch: int, length: int) -> dict:
  """All slots empty (pos = -1). Call inside jit so the zeros are made sharded, never on host."""
  return init_cache(cfg, batch, length)


def replace_rows(cache: dict, rows: jax.Array, prompt_cache: dict) -> dict:
  """Overwrites whole rows of `cache` [B, S, ...] with a prompt cache [R, P, ...] (P <= S).

  Slots [0, P) get the prompt cache, every later slot of those rows is emptied (pos -1), so the
  stale K/V of the previous sequence are invisible. Rows >= B are dropped (padding of a bucket).
  """
  P = prompt_cache["pos"].shape[1]
  S = cache["pos"].shape[1]
  R = rows.shape[0]
  pos_rows = jnp.concatenate([prompt_cache["pos"], jnp.full((R, S - P), -1, jnp.int32)], axis=1)
  pos = cache["pos"].at[rows].set(pos_rows, mode="drop")

  def put(big, small):
    return big.at[rows, :P].set(small.astype(big.dtype), mode="drop")

  layers = jax.tree.map(put, cache["layers"], prompt_cache["layers"])
  return {"pos": pos, "layers": layers}


def cache_report(cfg: ModelConfig, dtype=None) -> dict:
  """Cache bytes per token per layer for this config, and for the other layout where it applies.

  For MLA the alternative is the expanded per-head K/V a non-latent cache would hold
  (H * (qk_nope + rope) + H * v_head_dim values per token).
  """
  dt = jnp.dtype(cfg.dtype if dtype is None else dtype)
  out = {"layout": "mla_latent" if cfg.attention == "mla" else "gqa_per_head",
         "bytes_per_token_per_layer": cache_bytes_per_token_per_layer(cfg, dt)}
  if cfg.attention == "mla":
    expanded = cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim) * dt.itemsize
    out["expanded_kv_bytes_per_token_per_layer"] = int(expanded)
    out["compression"] = float(expanded / out["bytes_per_token_per_layer"])
  return out
