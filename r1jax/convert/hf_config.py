"""Hugging Face config.json <-> ModelConfig, for the families r1jax covers.

Reads both spellings real checkpoints use (`rope_scaling` on the hub, `rope_parameters` in
transformers 5), `q_lora_rank: null`, `mlp_only_layers` / `decoder_sparse_step`, tied embeddings.
Features that live only in the weights (q/k/v bias, q/k norm, correction bias, tied head) are read
from the tensor names, so a config.json that omits them still loads correctly.
"""
from __future__ import annotations

from typing import Any, Iterable

from r1jax.convert.safetensors_io import FP8_BLOCK
from r1jax.models.config import ModelConfig, RopeScaling


def _err(field: str, msg: str) -> ValueError:
  return ValueError(f"config.json field {field!r}: {msg}")


def _rope(hf: dict) -> tuple[float, RopeScaling | None]:
  params = dict(hf.get("rope_parameters") or {})
  scaling = dict(hf.get("rope_scaling") or {}) or params
  theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
  kind = scaling.get("rope_type", scaling.get("type", "default"))
  if kind in (None, "default"):
    return theta, None
  field = "rope_scaling" if hf.get("rope_scaling") else "rope_parameters"
  if kind not in ("yarn", "llama3", "linear"):
    raise _err(field, f"rope type {kind!r} is not supported (yarn, llama3, linear, default)")
  keys = dict(factor=float(scaling["factor"]))
  for k in ("original_max_position_embeddings", "beta_fast", "beta_slow", "mscale", "mscale_all_dim",
            "attention_factor", "low_freq_factor", "high_freq_factor", "truncate"):
    if scaling.get(k) is not None:
      keys[k] = scaling[k]
  return theta, RopeScaling(kind=kind, **keys)


def from_hf_config(hf: dict, tensor_names: Iterable[str] = (), **overrides: Any) -> ModelConfig:
  names = set(tensor_names)
  mt = hf.get("model_type", "")
  act = hf.get("hidden_act", "silu")
  if act not in ("silu", "swish"):
    raise _err("hidden_act", f"{act!r} is not supported (SwiGLU with silu only)")
  if hf.get("shared_expert_intermediate_size"):
    raise _err("shared_expert_intermediate_size", "gated shared experts (Qwen2-MoE) are not supported")
  theta, scaling = _rope(hf)
  has = lambda suffix: any(n.endswith(suffix) for n in names)
  experts = hf.get("n_routed_experts") or hf.get("num_local_experts") or hf.get("num_experts") or 0
  mla = bool(hf.get("kv_lora_rank"))
  kw: dict[str, Any] = dict(
      vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
      n_heads=hf["num_attention_heads"], ffn_dim=hf.get("intermediate_size", 0),
      n_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
      norm_eps=hf.get("rms_norm_eps", 1e-6), rope_theta=theta, rope_scaling=scaling,
      max_position_embeddings=hf.get("max_position_embeddings", 4096),
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)) or (bool(names) and "lm_head.weight" not in names),
      qkv_bias=has("self_attn.q_proj.bias") if names else mt == "qwen2",
      qk_norm=has("self_attn.q_norm.weight") if names else mt.startswith("qwen3"),
  )
  if mla:
    kw.update(attention="mla", q_lora_rank=hf.get("q_lora_rank") or None, kv_lora_rank=hf["kv_lora_rank"],
              qk_nope_head_dim=hf["qk_nope_head_dim"], qk_rope_head_dim=hf["qk_rope_head_dim"],
              v_head_dim=hf["v_head_dim"], n_kv_heads=0,
              rope_interleave=bool(hf.get("rope_interleave", True)))
    if hf.get("attention_bias"):
      raise _err("attention_bias", "MLA with attention bias is not supported")
  else:
    kw["head_dim"] = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    if hf.get("attention_bias") and not kw["qkv_bias"]:
      kw["qkv_bias"] = True
  if experts:
    router_bias = has("e_score_correction_bias") if names else mt == "deepseek_v3"
    score = hf.get("scoring_func") or ("sigmoid" if (mt == "deepseek_v3" or router_bias) else "softmax")
    greedy = hf.get("topk_method") == "greedy"
    freq = hf.get("decoder_sparse_step") or hf.get("moe_layer_freq") or 1
    if mt.startswith("deepseek") and freq != 1:
      raise _err("moe_layer_freq", "only 1 is supported for DeepSeek models")
    kw.update(
        n_routed_experts=experts, n_experts_per_tok=hf["num_experts_per_tok"],
        moe_ffn_dim=hf.get("moe_intermediate_size") or hf["intermediate_size"],
        n_shared_experts=hf.get("n_shared_experts") or 0,
        first_k_dense=hf.get("first_k_dense_replace") or 0, moe_layer_freq=freq,
        dense_layers=tuple(hf.get("mlp_only_layers") or ()),
        router_score=score, router_bias=router_bias,
        # Mixtral always renormalises its top-k; DeepSeek-V2 never does.
        norm_topk_prob=bool(hf.get("norm_topk_prob", mt != "deepseek_v2")),
        routed_scaling_factor=float(hf.get("routed_scaling_factor") or 1.0),
        n_group=1 if greedy else (hf.get("n_group") or 1),
        topk_group=1 if greedy else (hf.get("topk_group") or 1),
    )
  kw.update(overrides)
  return ModelConfig(**kw)


def _rope_params(cfg: ModelConfig) -> dict:
  out: dict[str, Any] = {"rope_theta": cfg.rope_theta, "rope_type": "default"}
  s = cfg.rope_scaling
  if s is not None:
    out.update(rope_type=s.kind, factor=s.factor, original_max_position_embeddings=s.original_max_position_embeddings)
    if s.kind == "yarn":
      out.update(beta_fast=s.beta_fast, beta_slow=s.beta_slow, mscale=s.mscale, mscale_all_dim=s.mscale_all_dim)
      if s.attention_factor is not None:
        out["attention_factor"] = s.attention_factor
    elif s.kind == "llama3":
      out.update(low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor)
  return out


def hf_family(cfg: ModelConfig) -> str:
  """The transformers model_type whose architecture matches this config exactly."""
  if cfg.attention == "mla":
    if cfg.is_moe and cfg.router_score == "softmax":
      return "deepseek_v2"
    return "deepseek_v3"
  if cfg.is_moe:
    if cfg.n_shared_experts or cfg.router_score != "softmax" or cfg.router_bias or cfg.first_k_dense:
      raise ValueError("no transformers family has GQA attention with shared experts / sigmoid routing / "
                       "first_k_dense; export needs attention='mla' for DeepSeek-style MoE")
    return "qwen3_moe" if cfg.qk_norm else "mixtral"
  if cfg.qk_norm:
    return "qwen3"
  return "qwen2" if cfg.qkv_bias else "llama"


_ARCH = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM",
         "qwen3_moe": "Qwen3MoeForCausalLM", "mixtral": "MixtralForCausalLM",
         "deepseek_v3": "DeepseekV3ForCausalLM", "deepseek_v2": "DeepseekV2ForCausalLM"}


def to_hf_config(cfg: ModelConfig) -> dict:
  mt = hf_family(cfg)
  hf: dict[str, Any] = dict(
      model_type=mt, architectures=[_ARCH[mt]], vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
      num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, intermediate_size=cfg.ffn_dim,
      rms_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.max_position_embeddings,
      tie_word_embeddings=cfg.tie_embeddings, hidden_act="silu", rope_parameters=_rope_params(cfg),
      rope_theta=cfg.rope_theta, torch_dtype=cfg.param_dtype,
  )
  if cfg.attention == "mla":
    hf.update(num_key_value_heads=cfg.n_heads, q_lora_rank=cfg.q_lora_rank, kv_lora_rank=cfg.kv_lora_rank,
              qk_nope_head_dim=cfg.qk_nope_head_dim, qk_rope_head_dim=cfg.qk_rope_head_dim,
              v_head_dim=cfg.v_head_dim, rope_interleave=cfg.rope_interleave, attention_bias=False)
  else:
    hf.update(num_key_value_heads=cfg.kv_heads, head_dim=cfg.hd)
    if mt == "llama":
      hf["attention_bias"] = cfg.qkv_bias
  if cfg.is_moe:
    hf.update(num_experts_per_tok=cfg.n_experts_per_tok, norm_topk_prob=cfg.norm_topk_prob)
    if mt.startswith("deepseek"):
      hf.update(n_routed_experts=cfg.n_routed_experts, moe_intermediate_size=cfg.moe_ffn_dim,
                n_shared_experts=cfg.n_shared_experts, first_k_dense_replace=cfg.first_k_dense,
                routed_scaling_factor=cfg.routed_scaling_factor, n_group=cfg.n_group, topk_group=cfg.topk_group,
                moe_layer_freq=1)
      if mt == "deepseek_v2":
        hf.update(topk_method="greedy" if cfg.n_group == 1 else "group_limited_greedy", scoring_func="softmax")
    elif mt == "qwen3_moe":
      hf.update(num_experts=cfg.n_routed_experts, moe_intermediate_size=cfg.moe_ffn_dim,
                decoder_sparse_step=cfg.moe_layer_freq, mlp_only_layers=list(cfg.dense_layers))
    else:
      hf.update(num_local_experts=cfg.n_routed_experts, intermediate_size=cfg.moe_ffn_dim)
  return hf


def fp8_block_size(hf: dict) -> tuple[int, int]:
  """The block of DeepSeek-style fp8 weight scales: config.json's
  `quantization_config.weight_block_size` (default 128 x 128, also when there is no quantization_config)."""
  q = hf.get("quantization_config")
  if not q:
    return FP8_BLOCK
  if q.get("quant_method") != "fp8":
    raise _err("quantization_config", f"quant_method {q.get('quant_method')!r} is not supported (fp8 only)")
  if q.get("fmt", "e4m3") != "e4m3":
    raise _err("quantization_config", f"fmt {q.get('fmt')!r} is not supported (e4m3 only)")
  return check_block_size(q.get("weight_block_size", FP8_BLOCK), "quantization_config.weight_block_size")


def check_block_size(block: Any, field: str = "weight_block_size") -> tuple[int, int]:
  if (not isinstance(block, (list, tuple)) or len(block) != 2
      or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)):
    raise _err(field, f"{block!r} is not two positive integers [rows, cols] (per-tensor fp8 is not supported)")
  return int(block[0]), int(block[1])


def fp8_quantization_config(block: tuple[int, int] = FP8_BLOCK) -> dict:
  """config.json's quantization_config for blockwise fp8 weights, as DeepSeek-V3 writes it."""
  return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
          "weight_block_size": list(check_block_size(block))}
