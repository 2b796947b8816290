"""Parameter counts (from jax.eval_shape, nothing allocated) and FLOPs per token for MFU."""
from __future__ import annotations

import math

import jax
from flax import nnx

from r1jax.models.config import ModelConfig


def count_params(cfg: ModelConfig) -> dict[str, int]:
  """{'total', 'active', 'embedding'} from the abstract model; active counts top-k + shared experts."""
  from r1jax.models.transformer import Transformer

  abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
  params = nnx.state(abstract, nnx.Param)
  total = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
  per_expert = 3 * cfg.d_model * cfg.moe_ffn_dim
  idle = len(cfg.moe_layer_ids) * (cfg.n_routed_experts - cfg.n_experts_per_tok) * per_expert
  emb = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
  return {"total": total, "active": total - idle, "embedding": emb}


def _attn_matmul_params(cfg: ModelConfig) -> int:
  d, H = cfg.d_model, cfg.n_heads
  if cfg.attention == "gqa":
    return d * cfg.hd * (H + 2 * cfg.kv_heads) + H * cfg.hd * d
  q = (d * cfg.q_lora_rank + cfg.q_lora_rank * H * cfg.qk_head_dim) if cfg.q_lora_rank else d * H * cfg.qk_head_dim
  kv = d * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) + cfg.kv_lora_rank * H * (cfg.qk_nope_head_dim + cfg.v_head_dim)
  return q + kv + H * cfg.v_head_dim * d


def flops_per_token(cfg: ModelConfig, seq_len: int, training: bool = True) -> float:
  """Matmul FLOPs per token: 2 * active matmul params + causal attention scores/values.

  Training counts forward + backward (x3). The embedding lookup is free; the LM head is not.
  """
  mlp = 0
  for i in range(cfg.n_layers):
    if cfg.is_moe_layer(i):
      mlp += 3 * cfg.d_model * cfg.moe_ffn_dim * (cfg.n_experts_per_tok + cfg.n_shared_experts)
      mlp += cfg.d_model * cfg.n_routed_experts  # router
    else:
      mlp += 3 * cfg.d_model * cfg.ffn_dim
  dense = cfg.n_layers * _attn_matmul_params(cfg) + mlp + cfg.d_model * cfg.vocab_size
  qk = cfg.qk_head_dim if cfg.attention == "mla" else cfg.hd
  v = cfg.v_head_dim if cfg.attention == "mla" else cfg.hd
  # Causal: on average a token attends to (seq_len + 1) / 2 keys.
  attn = cfg.n_layers * cfg.n_heads * (qk + v) * (seq_len + 1) / 2
  fwd = 2 * dense + 2 * attn
  return 3 * fwd if training else fwd
