"""Greedy decoding equals `transformers` generate(do_sample=False) token for token, on tiny random
Qwen2, Qwen3-MoE and DeepSeek-V3 checkpoints loaded through the converter, with prompts of
varied lengths in one batch; the sampler's log-probs equal log-softmax of HF's scores."""
import numpy as np
import pytest

from r1jax.convert.hf import load_hf_model
from r1jax.sampling import Sampler, SamplingParams
from tests.hf_reference import hf_config
from tests.sampling.conftest import TEST_BUCKETS

FAMILIES = ("qwen2", "qwen3_moe", "deepseek_v3")
NEW = 12


def build_decisive_hf_model(family: str, directory: str, seed: int = 0):
  """A tiny random HF model with std-0.2 weights (HF's 0.02 gives near-tied logits, where fp32
  rounding differences between torch and XLA may flip an argmax), saved with save_pretrained."""
  import torch
  import transformers as tf

  torch.manual_seed(seed)
  config = hf_config(family)
  config.num_hidden_layers = 2  # one dense and one MoE layer for the MoE families
  model = tf.AutoModelForCausalLM.from_config(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:
        p.copy_(1.0 + 0.1 * torch.randn_like(p))
      else:
        p.copy_(0.2 * torch.randn_like(p))
    for name, buf in model.named_buffers():
      if name.endswith("e_score_correction_bias"):
        buf.copy_(0.5 * torch.randn_like(buf))  # the bias must steer expert choice
  model.generation_config.eos_token_id = None  # run every row to max_new_tokens
  model.generation_config.pad_token_id = 0
  model.save_pretrained(directory)
  return model


def hf_greedy(model, prompt):
  import torch

  ids = torch.tensor([prompt], dtype=torch.long)
  with torch.no_grad():
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW,
                         min_new_tokens=NEW, return_dict_in_generate=True, output_scores=True)
  tokens = out.sequences[0, len(prompt):].numpy()
  scores = torch.stack(out.scores, 1)[0].double()  # [NEW, V]: raw logits (greedy has no warpers)
  logprobs = torch.log_softmax(scores, -1)[torch.arange(NEW), out.sequences[0, len(prompt):]].numpy()
  return tokens, logprobs


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_transformers_generate(family, tmp_path):
  hf_model = build_decisive_hf_model(family, str(tmp_path))
  cfg, model = load_hf_model(str(tmp_path))
  rng = np.random.default_rng(1)
  prompts = [rng.integers(0, cfg.vocab_size, n).tolist() for n in (1, 7, 18, 30)]
  sampler, params = Sampler.from_model(model, buckets=TEST_BUCKETS)
  res = sampler.generate(params, prompts, SamplingParams(temperature=0.0, max_new_tokens=NEW))
  for prompt, toks, lps in zip(prompts, res.tokens, res.logprobs):
    ref_tokens, ref_lp = hf_greedy(hf_model, prompt)
    np.testing.assert_array_equal(toks, ref_tokens)
    np.testing.assert_allclose(lps, ref_lp, atol=1e-4)
