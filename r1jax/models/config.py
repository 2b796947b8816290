"""ModelConfig: the one description of a decoder. Families differ only by these fields.

The model code never branches on a model name; presets (`presets.py`) are data.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, Optional

AttentionKind = Literal["gqa", "mla"]
RouterScore = Literal["softmax", "sigmoid"]
MoEBackend = Literal["blocks", "sort", "ragged", "dense", "alltoall"]
RematPolicy = Literal["none", "full", "dots"]


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """RoPE frequency scaling as in HF `rope_parameters` (transformers 5) / `rope_scaling` (hub)."""
  kind: Literal["yarn", "llama3", "linear"]
  factor: float
  original_max_position_embeddings: int = 4096
  # YaRN (DeepSeek-V2/V3)
  beta_fast: float = 32.0
  beta_slow: float = 1.0
  mscale: float = 1.0
  mscale_all_dim: float = 0.0
  attention_factor: Optional[float] = None
  truncate: bool = True
  # llama3
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  ffn_dim: int  # dense SwiGLU hidden size
  # --- GQA attention ---
  n_kv_heads: int = 0  # 0 -> n_heads
  head_dim: int = 0  # 0 -> d_model // n_heads
  qkv_bias: bool = False
  qk_norm: bool = False  # Qwen3: per-head RMSNorm on q and k
  attention: AttentionKind = "gqa"
  # --- MLA attention (DeepSeek-V2/V3) ---
  q_lora_rank: Optional[int] = None  # None: plain q_proj
  kv_lora_rank: int = 0
  qk_nope_head_dim: int = 0
  qk_rope_head_dim: int = 0
  v_head_dim: int = 0
  mla_absorb: bool = True  # decode over the latent cache with W_UK/W_UV folded in
  # --- RoPE ---
  rope_theta: float = 10000.0
  rope_scaling: Optional[RopeScaling] = None
  rope_interleave: bool = False  # DeepSeek-V3's interleaved rope pairs (x0, x1), (x2, x3), ...
  max_position_embeddings: int = 4096
  # --- norms / embeddings ---
  norm_eps: float = 1e-6
  tie_embeddings: bool = False
  # --- MoE ---
  n_routed_experts: int = 0  # 0: every layer dense
  n_experts_per_tok: int = 0
  moe_ffn_dim: int = 0
  n_shared_experts: int = 0  # shared hidden = moe_ffn_dim * n_shared_experts
  first_k_dense: int = 0
  moe_layer_freq: int = 1  # layer i is MoE if i >= first_k_dense and (i+1) % freq == 0 (Qwen-MoE)
  dense_layers: tuple[int, ...] = ()  # explicit dense layers (Qwen3-MoE mlp_only_layers)
  router_score: RouterScore = "softmax"
  norm_topk_prob: bool = True
  routed_scaling_factor: float = 1.0
  n_group: int = 1
  topk_group: int = 1
  router_bias: bool = False  # DeepSeek-V3 e_score_correction_bias (state, not a Param)
  seq_aux_loss_coef: float = 0.0  # DeepSeek-V3 sequence-wise balance loss weight
  moe_backend: MoEBackend = "blocks"
  moe_block_size: int = 64  # rows per block of the "blocks" backend
  capacity_factor: Optional[float] = None  # "sort" backend only; None = dropless (C = tokens)
  # --- numerics / memory ---
  param_dtype: str = "float32"
  dtype: str = "float32"  # activations
  remat: RematPolicy = "none"
  # "xla": explicit einsum softmax (every backend; the parity reference). "cudnn": the fused
  # flash-attention kernel through jax.nn.dot_product_attention, for GQA training / prefill
  # without a cache on NVIDIA GPUs (bf16/fp16); decoding against the KV cache stays on "xla".
  attention_impl: str = "xla"
  init_std: float = 0.02

  # ---- derived ----
  @property
  def kv_heads(self) -> int:
    return self.n_kv_heads or self.n_heads

  @property
  def hd(self) -> int:
    return self.head_dim or self.d_model // self.n_heads

  @property
  def qk_head_dim(self) -> int:  # MLA
    return self.qk_nope_head_dim + self.qk_rope_head_dim

  @property
  def rope_dim(self) -> int:
    return self.qk_rope_head_dim if self.attention == "mla" else self.hd

  @property
  def is_moe(self) -> bool:
    return self.n_routed_experts > 0

  def is_moe_layer(self, i: int) -> bool:
    if not self.is_moe or i < self.first_k_dense or i in self.dense_layers:
      return False
    return (i + 1) % self.moe_layer_freq == 0

  @property
  def moe_layer_ids(self) -> tuple[int, ...]:
    return tuple(i for i in range(self.n_layers) if self.is_moe_layer(i))

  def replace(self, **kw) -> "ModelConfig":
    return dataclasses.replace(self, **kw)

  def __post_init__(self):
    validate(self)


def _check(ok: bool, field: str, msg: str):
  if not ok:
    raise ValueError(f"ModelConfig.{field}: {msg}")


def validate(c: ModelConfig) -> None:
  for f in ("vocab_size", "d_model", "n_layers", "n_heads"):
    _check(getattr(c, f) > 0, f, f"must be > 0, got {getattr(c, f)}")
  _check(c.attention in ("gqa", "mla"), "attention", f"must be 'gqa' or 'mla', got {c.attention!r}")
  if c.attention == "gqa":
    _check(c.n_heads % c.kv_heads == 0, "n_kv_heads",
           f"n_heads={c.n_heads} must be a multiple of n_kv_heads={c.kv_heads}")
    _check(c.hd % 2 == 0, "head_dim", f"rope needs an even head_dim, got {c.hd}")
  else:
    for f in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
      _check(getattr(c, f) > 0, f, "must be > 0 for MLA attention")
    _check(c.qk_rope_head_dim % 2 == 0, "qk_rope_head_dim", "must be even")
  if c.is_moe:
    _check(0 < c.n_experts_per_tok <= c.n_routed_experts, "n_experts_per_tok",
           f"must be in [1, n_routed_experts={c.n_routed_experts}], got {c.n_experts_per_tok}")
    _check(c.moe_ffn_dim > 0, "moe_ffn_dim", "must be > 0 when n_routed_experts > 0")
    _check(c.router_score in ("softmax", "sigmoid"), "router_score", f"got {c.router_score!r}")
    _check(c.n_routed_experts % c.n_group == 0, "n_group",
           f"n_group={c.n_group} must divide n_routed_experts={c.n_routed_experts}")
    if c.n_group > 1:
      _check(c.n_routed_experts // c.n_group >= 2, "n_group", "each expert group needs >= 2 experts")
      _check(1 <= c.topk_group <= c.n_group, "topk_group", f"must be in [1, n_group={c.n_group}]")
      _check(c.n_experts_per_tok <= c.topk_group * c.n_routed_experts // c.n_group, "topk_group",
             "kept groups hold fewer experts than n_experts_per_tok")
    _check(c.moe_backend in ("blocks", "sort", "ragged", "dense", "alltoall"), "moe_backend", f"got {c.moe_backend!r}")
    _check(c.moe_block_size > 0, "moe_block_size", f"must be > 0, got {c.moe_block_size}")
    _check(c.capacity_factor is None or c.capacity_factor > 0, "capacity_factor", "must be > 0 or None")
  _check(c.remat in ("none", "full", "dots"), "remat", f"got {c.remat!r}")
  _check(c.attention_impl in ("xla", "cudnn"), "attention_impl", f"must be 'xla' or 'cudnn', got {c.attention_impl!r}")
  if c.attention_impl == "cudnn":
    _check(c.attention == "gqa", "attention_impl", "'cudnn' supports GQA attention only (MLA has q/k and v "
                                                   "head dims that differ); use 'xla'")
    _check(c.dtype in ("bfloat16", "float16"), "attention_impl", f"'cudnn' needs dtype bfloat16 or float16, got {c.dtype!r}")
  for f in ("param_dtype", "dtype"):
    _check(getattr(c, f) in ("float32", "bfloat16", "float16"), f, f"got {getattr(c, f)!r}")
  if c.rope_scaling is not None:
    _check(c.rope_scaling.kind in ("yarn", "llama3", "linear"), "rope_scaling.kind",
           f"got {c.rope_scaling.kind!r}")
