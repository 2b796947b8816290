"""Tiny random Hugging Face models built locally (no hub) for parity tests, one per family."""
from __future__ import annotations

import os

COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False)


def hf_config(family: str):
  import transformers as tf

  if family == "qwen2":
    return tf.Qwen2Config(**COMMON)
  if family == "llama":
    return tf.LlamaConfig(**COMMON, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
  if family == "qwen3":
    return tf.Qwen3Config(**{**COMMON, "tie_word_embeddings": True}, head_dim=16)
  if family == "qwen3_moe":
    return tf.Qwen3MoeConfig(**{**COMMON, "num_hidden_layers": 3}, head_dim=16, num_experts=8, num_experts_per_tok=2,
                             moe_intermediate_size=32, decoder_sparse_step=1, norm_topk_prob=True,
                             mlp_only_layers=[1])
  if family == "mixtral":
    return tf.MixtralConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2)
  if family == "deepseek_v3":
    return tf.DeepseekV3Config(
        vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1, n_routed_experts=8, num_experts_per_tok=2,
        routed_scaling_factor=2.5, kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=8, qk_nope_head_dim=16,
        v_head_dim=16, n_group=4, topk_group=2, first_k_dense_replace=1, norm_topk_prob=True,
        max_position_embeddings=256, tie_word_embeddings=False,
        rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 32,
                      "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})
  raise KeyError(family)


FAMILIES = ("qwen2", "llama", "qwen3", "qwen3_moe", "mixtral", "deepseek_v3")


def build_hf_model(family: str, directory: str, seed: int = 0):
  """Builds, perturbs (so zero-initialised buffers really matter) and saves a tiny HF model."""
  import torch
  import transformers as tf

  torch.manual_seed(seed)
  cfg = hf_config(family)
  model = tf.AutoModelForCausalLM.from_config(cfg).eval()
  with torch.no_grad():
    for name, buf in model.named_buffers():
      if name.endswith("e_score_correction_bias"):
        buf.copy_(torch.randn_like(buf) * 0.5)  # exercise bias-driven expert choice
    for name, p in model.named_parameters():
      if "norm" in name and name.endswith("weight"):
        p.add_(torch.randn_like(p) * 0.1)  # norms start at 1: make them matter
      if name.endswith("gate.weight") and p.dim() == 2:
        p.mul_(20.0)  # sharper routers, so routing differences show up in logits
  os.makedirs(directory, exist_ok=True)
  model.save_pretrained(directory)
  return model


def hf_logits(model, tokens, attention_mask):
  import numpy as np
  import torch

  with torch.no_grad():
    out = model(input_ids=torch.as_tensor(np.asarray(tokens), dtype=torch.long),
                attention_mask=torch.as_tensor(np.asarray(attention_mask), dtype=torch.long))
  return out.logits.float().numpy()
