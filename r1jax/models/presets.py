"""Named ModelConfigs: tiny ones for CPU tests and the demo, and real ones (configs only; weights come
from HF checkpoints through `r1jax.convert`). Numbers are copied from each model's config.json."""
from __future__ import annotations

from r1jax.models.config import ModelConfig, RopeScaling

_QWEN25 = dict(qkv_bias=True, rope_theta=1e6, norm_eps=1e-6, max_position_embeddings=32768, vocab_size=151936)

PRESETS: dict[str, ModelConfig] = {
    # --- CPU ---
    "tiny_dense": ModelConfig(vocab_size=1024, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=384,
                              qkv_bias=True, tie_embeddings=True, max_position_embeddings=1024),
    "tiny_moe": ModelConfig(vocab_size=1024, d_model=192, n_layers=4, n_heads=6, ffn_dim=512, attention="mla",
                            q_lora_rank=96, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
                            v_head_dim=32, rope_interleave=True, n_routed_experts=8, n_experts_per_tok=2,
                            moe_ffn_dim=128, n_shared_experts=1, first_k_dense=1, router_score="sigmoid",
                            router_bias=True, n_group=2, topk_group=1, routed_scaling_factor=2.5,
                            max_position_embeddings=1024),
    # --- Qwen2.5 ---
    "qwen2.5-0.5b": ModelConfig(d_model=896, n_layers=24, n_heads=14, n_kv_heads=2, ffn_dim=4864,
                                tie_embeddings=True, **_QWEN25),
    "qwen2.5-1.5b": ModelConfig(d_model=1536, n_layers=28, n_heads=12, n_kv_heads=2, ffn_dim=8960,
                                tie_embeddings=True, **_QWEN25),
    "qwen2.5-7b": ModelConfig(d_model=3584, n_layers=28, n_heads=28, n_kv_heads=4, ffn_dim=18944,
                              **{**_QWEN25, "vocab_size": 152064}),
    "qwen2.5-math-1.5b": ModelConfig(d_model=1536, n_layers=28, n_heads=12, n_kv_heads=2, ffn_dim=8960,
                                     tie_embeddings=True, **{**_QWEN25, "rope_theta": 10000.0,
                                                             "max_position_embeddings": 4096}),
    # --- Llama ---
    "llama3.1-8b": ModelConfig(vocab_size=128256, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                               ffn_dim=14336, rope_theta=500000.0, norm_eps=1e-5, max_position_embeddings=131072,
                               rope_scaling=RopeScaling(kind="llama3", factor=8.0, low_freq_factor=1.0,
                                                        high_freq_factor=4.0, original_max_position_embeddings=8192)),
    # --- MoE ---
    "qwen3-30b-a3b": ModelConfig(vocab_size=151936, d_model=2048, n_layers=48, n_heads=32, n_kv_heads=4,
                                 head_dim=128, ffn_dim=6144, qk_norm=True, rope_theta=1e6, norm_eps=1e-6,
                                 max_position_embeddings=40960, n_routed_experts=128, n_experts_per_tok=8,
                                 moe_ffn_dim=768, norm_topk_prob=True, moe_backend="ragged"),
    "mixtral-8x7b": ModelConfig(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                                ffn_dim=14336, rope_theta=1e6, norm_eps=1e-5, max_position_embeddings=32768,
                                n_routed_experts=8, n_experts_per_tok=2, moe_ffn_dim=14336, norm_topk_prob=True,
                                moe_backend="ragged"),
    "deepseek-v2-lite": ModelConfig(vocab_size=102400, d_model=2048, n_layers=27, n_heads=16, ffn_dim=10944,
                                    attention="mla", q_lora_rank=None, kv_lora_rank=512, qk_nope_head_dim=128,
                                    qk_rope_head_dim=64, v_head_dim=128, rope_interleave=True,
                                    rope_scaling=RopeScaling(kind="yarn", factor=40.0,
                                                             original_max_position_embeddings=4096, mscale=0.707,
                                                             mscale_all_dim=0.707),
                                    max_position_embeddings=163840, n_routed_experts=64, n_experts_per_tok=6,
                                    moe_ffn_dim=1408, n_shared_experts=2, first_k_dense=1, router_score="softmax",
                                    norm_topk_prob=False, moe_backend="ragged"),
    "deepseek-v3": ModelConfig(vocab_size=129280, d_model=7168, n_layers=61, n_heads=128, ffn_dim=18432,
                               attention="mla", q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                               qk_rope_head_dim=64, v_head_dim=128, rope_interleave=True,
                               rope_scaling=RopeScaling(kind="yarn", factor=40.0, original_max_position_embeddings=4096,
                                                        mscale=1.0, mscale_all_dim=1.0),
                               max_position_embeddings=163840, n_routed_experts=256, n_experts_per_tok=8,
                               moe_ffn_dim=2048, n_shared_experts=1, first_k_dense=3, router_score="sigmoid",
                               router_bias=True, n_group=8, topk_group=4, routed_scaling_factor=2.5,
                               norm_topk_prob=True, moe_backend="ragged", param_dtype="bfloat16", dtype="bfloat16"),
}

# Published parameter counts (total, active) for the real presets; DeepSeek-V3 excludes its
# 14B multi-token-prediction module, as the paper's 671B does.
PUBLISHED = {
    "qwen2.5-0.5b": (0.494e9, None), "qwen2.5-1.5b": (1.544e9, None), "qwen2.5-7b": (7.616e9, None),
    "qwen2.5-math-1.5b": (1.544e9, None), "llama3.1-8b": (8.030e9, None),
    "qwen3-30b-a3b": (30.53e9, 3.3e9), "mixtral-8x7b": (46.70e9, 12.9e9),
    "deepseek-v2-lite": (15.7e9, 2.4e9), "deepseek-v3": (671e9, 37e9),
}


def get_preset(name: str, **overrides) -> ModelConfig:
  if name not in PRESETS:
    raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
  return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
