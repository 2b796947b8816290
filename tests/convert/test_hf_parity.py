"""Logit parity with transformers (PyTorch) for every family, via the safetensors converter,
and the export round trip r1jax -> HF files -> transformers."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.convert import hf_config
from r1jax.convert.hf import load_hf_model, save_hf_model
from r1jax.parallel.mesh import make_mesh
from tests.hf_reference import FAMILIES, build_hf_model, hf_logits

TOL = 1e-4


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  out = {}
  for fam in FAMILIES:
    d = str(tmp_path_factory.mktemp(fam))
    out[fam] = (d, build_hf_model(fam, d))
  return out


def _batch(seed=0, vocab=256):
  rng = np.random.default_rng(seed)
  tok = rng.integers(0, vocab, (3, 12))
  mask = np.ones((3, 12), np.int64)
  mask[1, 9:] = 0  # right padding of different lengths
  mask[2, 5:] = 0
  return tok, mask


def _max_diff(model, hf_model, tok, mask):
  ref = hf_logits(hf_model, tok, mask)
  out = np.asarray(model(jnp.asarray(tok), segment_ids=jnp.asarray(mask)).logits)
  return float(np.abs(out - ref)[mask.astype(bool)].max())


@pytest.mark.parametrize("family", FAMILIES)
def test_logit_parity(checkpoints, family):
  path, hf_model = checkpoints[family]
  cfg, model = load_hf_model(path)
  tok, mask = _batch()
  diff = _max_diff(model, hf_model, tok, mask)
  print(f"parity {family}: max abs diff {diff:.3g}")
  assert diff <= TOL, f"{family}: max abs logit diff {diff}"


def test_deepseek_config_exercises_group_routing(checkpoints):
  path, _ = checkpoints["deepseek_v3"]
  cfg, model = load_hf_model(path)
  assert cfg.n_group == 4 and cfg.topk_group == 2 and cfg.router_bias and cfg.router_score == "sigmoid"
  assert cfg.rope_interleave and cfg.rope_scaling.kind == "yarn" and cfg.q_lora_rank == 48
  bias = np.asarray(model.layers[1].mlp.e_score_correction_bias[...])
  assert np.abs(bias).max() > 0.1  # the perturbed, non-zero correction bias was loaded


def test_config_spellings():
  """Real checkpoints: hub `rope_scaling` with `type`, `q_lora_rank: null`, tied heads, mlp_only_layers."""
  hub = {"model_type": "deepseek_v2", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
         "num_attention_heads": 2, "intermediate_size": 64, "kv_lora_rank": 16, "q_lora_rank": None,
         "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "n_routed_experts": 4,
         "num_experts_per_tok": 2, "moe_intermediate_size": 16, "n_shared_experts": 2, "first_k_dense_replace": 1,
         "topk_method": "greedy", "n_group": 8, "topk_group": 3, "rope_theta": 10000,
         "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                          "mscale": 0.707, "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1}}
  cfg = hf_config.from_hf_config(hub)
  assert cfg.attention == "mla" and cfg.q_lora_rank is None and cfg.n_group == 1 and not cfg.norm_topk_prob
  assert cfg.rope_scaling.kind == "yarn" and cfg.rope_scaling.factor == 40
  assert cfg.router_score == "softmax" and not cfg.router_bias
  with pytest.raises(ValueError, match="rope_scaling"):
    hf_config.from_hf_config({**hub, "rope_scaling": {"type": "dynamic", "factor": 2}})
  with pytest.raises(ValueError, match="hidden_act"):
    hf_config.from_hf_config({**hub, "hidden_act": "gelu"})


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "qwen3_moe", "mixtral", "deepseek_v3"])
def test_export_round_trip(checkpoints, tmp_path, family):
  import transformers as tf

  path, hf_model = checkpoints[family]
  cfg, model = load_hf_model(path)
  out = save_hf_model(model, str(tmp_path / "export"), max_shard_bytes=200_000)  # force several shards
  assert os.path.exists(os.path.join(out, "model.safetensors.index.json"))
  reloaded = tf.AutoModelForCausalLM.from_pretrained(out).eval()
  tok, mask = _batch(1)
  np.testing.assert_allclose(hf_logits(reloaded, tok, mask), hf_logits(hf_model, tok, mask), atol=1e-5, rtol=0)
  cfg2, model2 = load_hf_model(out)
  assert cfg2 == cfg


def test_sharded_load_matches(checkpoints, devices8):
  path, hf_model = checkpoints["deepseek_v3"]
  mesh = make_mesh({"data": 2, "fsdp": 2, "expert": 2, "tensor": 1})
  cfg, model = load_hf_model(path, mesh=mesh)
  w = model.layers[1].mlp.w_gate[...]
  assert w.sharding.spec == jax.sharding.PartitionSpec("expert", "fsdp", "tensor")
  assert len(w.addressable_shards) == 8
  tok, mask = _batch()
  with jax.set_mesh(mesh):
    assert _max_diff(model, hf_model, tok, mask) <= TOL


def test_bad_checkpoints(checkpoints, tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    load_hf_model(str(tmp_path))
  path, _ = checkpoints["qwen2"]
  bad = tmp_path / "bad"
  bad.mkdir()
  for f in os.listdir(path):
    os.symlink(os.path.join(path, f), bad / f)
  os.unlink(bad / "config.json")
  c = json.load(open(os.path.join(path, "config.json")))
  c["intermediate_size"] = 128
  json.dump(c, open(bad / "config.json", "w"))
  with pytest.raises(ValueError, match=r"bad: parameter layers\.0\.mlp\.\w+_proj\.kernel has shape \(\d+, \d+\) on disk"):
    load_hf_model(str(bad))
