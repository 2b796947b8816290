"""Blockwise fp8 (DeepSeek-V3 layout) in and out: dequantisation per weight_block_size block with
partial edge blocks, into the requested dtype; MTP layers skipped; the fp8 export round trip.

The fp8 checkpoints here are written independently of r1jax: quantised block by block in NumPy
(scale_inv = amax / 448, q = float8_e4m3fn(w / scale_inv)) and saved with the `safetensors`
library; transformers' model, loaded with the dequantised weights, is the logit reference.
"""
import json
import logging
import math
import os

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from r1jax.convert import hf_config
from r1jax.convert.hf import hf_tensors, load_hf_model, save_hf_model
from r1jax.convert.safetensors_io import TensorReader, dequantize_blockwise, quantize_blockwise
from tests.hf_reference import hf_logits

TOL = 1e-4
FP8 = ml_dtypes.float8_e4m3fn
N_LAYERS = 2
# Linear weights DeepSeek-V3's fp8 checkpoint stores as F8_E4M3 + F32 `*_scale_inv` (the rest,
# embeddings, norms, the router `mlp.gate.weight` and lm_head, stay bf16 / fp32).
QUANTISED = ("self_attn.q_a_proj.weight", "self_attn.q_b_proj.weight", "self_attn.kv_a_proj_with_mqa.weight",
             "self_attn.kv_b_proj.weight", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
             "mlp.up_proj.weight", "mlp.down_proj.weight")


def _quantised(name: str) -> bool:
  if not name.startswith("model.layers."):
    return False
  rest = name.split(".", 3)[3]
  if rest.startswith("mlp.experts.") or rest.startswith("mlp.shared_experts."):
    rest = "mlp." + rest.rsplit(".", 2)[-2] + ".weight"
  return rest in QUANTISED


def quantise_ref(w: np.ndarray, bm: int, bn: int):
  """One block at a time: (fp8 codes, float32 scale_inv [ceil(M/bm), ceil(N/bn)])."""
  m, n = w.shape
  q = np.zeros((m, n), FP8)
  s = np.zeros((math.ceil(m / bm), math.ceil(n / bn)), np.float32)
  for i in range(s.shape[0]):
    for j in range(s.shape[1]):
      blk = w[i * bm:(i + 1) * bm, j * bn:(j + 1) * bn].astype(np.float32)
      amax = np.float32(np.abs(blk).max())
      s[i, j] = amax / np.float32(448.0) if amax > 0 else np.float32(1.0)
      q[i * bm:(i + 1) * bm, j * bn:(j + 1) * bn] = (blk / s[i, j]).astype(FP8)
  return q, s


def dequantise_ref(q: np.ndarray, s: np.ndarray, bm: int, bn: int) -> np.ndarray:
  out = np.zeros(q.shape, np.float32)
  for i in range(s.shape[0]):
    for j in range(s.shape[1]):
      out[i * bm:(i + 1) * bm, j * bn:(j + 1) * bn] = q[i * bm:(i + 1) * bm, j * bn:(j + 1) * bn].astype(np.float32) * s[i, j]
  return out


def _tiny_v3():
  """DeepSeek-V3-shaped, with no dimension a multiple of 16 or 128 (partial edge blocks everywhere)."""
  import torch
  import transformers as tf

  torch.manual_seed(0)
  cfg = tf.DeepseekV3Config(
      vocab_size=256, hidden_size=200, intermediate_size=300, moe_intermediate_size=72, num_hidden_layers=N_LAYERS,
      num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2,
      routed_scaling_factor=2.5, kv_lora_rank=100, q_lora_rank=150, qk_rope_head_dim=8, qk_nope_head_dim=16,
      v_head_dim=16, n_group=1, topk_group=1, first_k_dense_replace=1, norm_topk_prob=True,
      max_position_embeddings=256, tie_word_embeddings=False)
  model = tf.AutoModelForCausalLM.from_config(cfg).eval()
  with torch.no_grad():
    for name, buf in model.named_buffers():
      if name.endswith("e_score_correction_bias"):
        buf.copy_(torch.randn_like(buf) * 0.5)
    for name, p in model.named_parameters():
      if "norm" in name and name.endswith("weight"):
        p.add_(torch.randn_like(p) * 0.1)
      if name.endswith("gate.weight") and p.dim() == 2:
        p.mul_(20.0)
  return model


def _write(directory, tensors: dict, config: dict):
  import torch
  from safetensors.torch import save_file

  os.makedirs(directory, exist_ok=True)
  out = {}
  for k, a in tensors.items():
    if a.dtype == FP8:
      out[k] = torch.from_numpy(np.ascontiguousarray(a).view(np.uint8)).view(torch.float8_e4m3fn)
    else:
      out[k] = torch.from_numpy(np.ascontiguousarray(a))
  save_file(out, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f)
  return str(directory)


def _mtp_tensors(tensors: dict, depth: int = 2) -> dict:
  """Multi-token-prediction modules at layer indices N_LAYERS.., as V3's `model.layers.61.*` (depth 1):
  a decoder layer (fp8 weights + scales included) plus embed / eh_proj / enorm / hnorm / shared_head."""
  pre, out = f"model.layers.{N_LAYERS - 1}.", {}
  d = tensors["model.norm.weight"].shape[0]
  for new in (f"model.layers.{N_LAYERS + i}." for i in range(depth)):
    out.update({new + k[len(pre):]: v.copy() for k, v in tensors.items() if k.startswith(pre)})
    out.update({new + "embed_tokens.weight": tensors["model.embed_tokens.weight"].copy(),
                new + "eh_proj.weight": np.zeros((d, 2 * d), np.float32),
                new + "enorm.weight": np.ones(d, np.float32), new + "hnorm.weight": np.ones(d, np.float32),
                new + "shared_head.norm.weight": np.ones(d, np.float32),
                new + "shared_head.head.weight": tensors["lm_head.weight"].copy()})
  return out


def _read_raw(path):
  """name -> numpy array (fp8 as float8_e4m3fn) of every safetensors file in path, via `safetensors`."""
  import torch
  from safetensors import safe_open

  out = {}
  for f in sorted(p for p in os.listdir(path) if p.endswith(".safetensors")):
    with safe_open(os.path.join(path, f), framework="pt") as st:
      for k in st.keys():
        t = st.get_tensor(k)
        if t.dtype == torch.float8_e4m3fn:
          out[k] = t.view(torch.uint8).numpy().view(FP8)
        elif t.dtype == torch.bfloat16:
          out[k] = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
          out[k] = t.numpy()
  return out


def _to_disk(state: dict) -> dict:
  """transformers' fused experts (gate_up_proj [E, 2F, D], down_proj [E, D, F]) -> V3's per-expert tensors."""
  out = {}
  for k, v in state.items():
    if k.endswith(".experts.gate_up_proj"):
      f = v.shape[1] // 2
      for j in range(v.shape[0]):
        out[k.replace("gate_up_proj", f"{j}.gate_proj.weight")] = v[j, :f]
        out[k.replace("gate_up_proj", f"{j}.up_proj.weight")] = v[j, f:]
    elif k.endswith(".experts.down_proj"):
      for j in range(v.shape[0]):
        out[k.replace("down_proj", f"{j}.down_proj.weight")] = v[j]
    else:
      out[k] = v
  return out


def _to_torch(disk: dict, like: dict) -> dict:
  """The inverse of _to_disk, for transformers' load_state_dict."""
  out = {}
  for k, v in like.items():
    if k.endswith(".experts.gate_up_proj"):
      e = v.shape[0]
      out[k] = np.stack([np.concatenate([disk[k.replace("gate_up_proj", f"{j}.gate_proj.weight")],
                                         disk[k.replace("gate_up_proj", f"{j}.up_proj.weight")]]) for j in range(e)])
    elif k.endswith(".experts.down_proj"):
      out[k] = np.stack([disk[k.replace("down_proj", f"{j}.down_proj.weight")] for j in range(v.shape[0])])
    else:
      out[k] = disk[k]
  return out


@pytest.fixture(scope="module")
def tiny():
  model = _tiny_v3()
  state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
  config = json.loads(model.config.to_json_string())
  return model, state, config


def _fp8_checkpoint(tiny, directory, block, mtp=False, config_block=True):
  """Writes the fp8 checkpoint; returns (path, transformers model with the dequantised weights,
  the fp8 tensors, the dequantised float32 values)."""
  import torch

  model, state, config = tiny
  tensors, deq = {}, {}
  disk = _to_disk(state)
  for k, w in disk.items():
    if _quantised(k):
      q, s = quantise_ref(w, *block)
      tensors[k], tensors[k + "_scale_inv"] = q, s
      deq[k] = dequantise_ref(q, s, *block)
    else:
      tensors[k] = w
  assert len(deq) == 5 * N_LAYERS + 3 + 3 * (4 + 1)  # attention x5, 1 dense MLP, 1 MoE (4 experts + shared)
  if mtp:
    tensors.update(_mtp_tensors(tensors))
  config = dict(config)
  if config_block:
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": list(block)}
  path = _write(directory, tensors, config)
  ref = type(model)(model.config).eval()
  ref.load_state_dict({k: torch.from_numpy(v) for k, v in _to_torch({**disk, **deq}, state).items()})
  return path, ref, tensors, deq


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  tok = rng.integers(0, 256, (3, 12))
  mask = np.ones((3, 12), np.int64)
  mask[1, 9:] = 0
  mask[2, 5:] = 0
  return tok, mask


def _max_diff(model, ref, seed=0):
  tok, mask = _batch(seed)
  out = np.asarray(model(jnp.asarray(tok), segment_ids=jnp.asarray(mask)).logits)
  return float(np.abs(out - hf_logits(ref, tok, mask))[mask.astype(bool)].max())


def _exported(model) -> dict:
  return dict(hf_tensors(model))


@pytest.mark.parametrize("block", [(128, 128), (16, 16)])
def test_fp8_checkpoint_loads_exactly(tiny, tmp_path, block):
  path, ref, _, deq = _fp8_checkpoint(tiny, tmp_path / "fp8", block)
  cfg, model = load_hf_model(path)
  assert cfg.param_dtype == "float32"
  loaded = _exported(model)
  for k, v in deq.items():  # every quantised weight is exactly its float32 dequantised value
    assert loaded[k].dtype == np.float32
    np.testing.assert_array_equal(loaded[k], v, err_msg=k)
  diff = _max_diff(model, ref)
  print(f"fp8 {block}: max abs logit diff {diff:.3g}")
  assert diff <= TOL


def test_v3_kv_a_proj_edge_blocks():
  """V3's kv_a_proj_with_mqa [576, 7168] has a [5, 56] scale grid: the last row block holds 64 rows.
  Deriving the block from the grid (ceil(576 / 5) = 116 rows) mis-scales ~20% of the elements."""
  rng = np.random.default_rng(0)
  m, n = 576, 7168
  q = (rng.standard_normal((m, n)) * 100).clip(-448, 448).astype(FP8)
  s = rng.uniform(1e-4, 1e-2, (5, 56)).astype(np.float32)
  ref = dequantise_ref(q, s, 128, 128)
  got = dequantize_blockwise(q, s, (128, 128), np.float32, name="kv_a_proj_with_mqa.weight")
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, ref)
  # The old derivation, transcribed: block = ceil(shape / grid).
  bm, bn = -(-m // s.shape[0]), -(-n // s.shape[1])
  assert (bm, bn) == (116, 128)
  old = q.astype(np.float32) * np.repeat(np.repeat(s, bm, 0), bn, 1)[:m, :n]
  assert 0.15 < np.mean(old != ref) < 0.25


def test_requested_dtype(tiny, tmp_path):
  path, _, tensors, deq = _fp8_checkpoint(tiny, tmp_path / "fp8", (16, 16))
  name = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"
  reader = TensorReader(path, (16, 16))
  a = reader.get(name)
  assert a.dtype == np.float32
  np.testing.assert_array_equal(a, deq[name])
  b = reader.get(name, dtype=ml_dtypes.bfloat16)
  assert b.dtype == ml_dtypes.bfloat16
  np.testing.assert_array_equal(b, deq[name].astype(ml_dtypes.bfloat16))
  assert reader.get(name, dequantize=False).dtype == FP8
  _, model = load_hf_model(path, dtype="bfloat16")
  w = model.layers[0].self_attn.kv_a_proj_with_mqa.kernel[...]
  assert w.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(w), deq[name].T.astype(ml_dtypes.bfloat16))


def test_scale_grid_must_match_block(tiny, tmp_path):
  # Scales for 16x16 blocks, but config.json has no quantization_config: the default is 128x128.
  path, _, tensors, _ = _fp8_checkpoint(tiny, tmp_path / "fp8", (16, 16), config_block=False)
  with pytest.raises(ValueError, match=r"model\.safetensors: tensor 'model\.layers\.0\.[\w.]+\.weight': scale_inv has shape \(\d+, \d+\), "
                                       r"expected \(\d+, \d+\) for weight \(\d+, \d+\) in 128x128 blocks"):
    load_hf_model(path)
  q = tensors["model.layers.0.mlp.gate_proj.weight"]  # [300, 200]
  with pytest.raises(ValueError, match=r"gate_proj: scale_inv has shape \(3, 1\), expected \(3, 2\)"):
    dequantize_blockwise(q, np.ones((3, 1), np.float32), (128, 128), name="gate_proj")


def test_quantization_config_fields():
  assert hf_config.fp8_block_size({}) == (128, 128)
  q = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic"}
  assert hf_config.fp8_block_size({"quantization_config": q}) == (128, 128)
  assert hf_config.fp8_block_size({"quantization_config": {**q, "weight_block_size": [16, 32]}}) == (16, 32)
  with pytest.raises(ValueError, match="quantization_config.weight_block_size"):
    hf_config.fp8_block_size({"quantization_config": {**q, "weight_block_size": None}})
  with pytest.raises(ValueError, match="quantization_config.weight_block_size"):
    hf_config.fp8_block_size({"quantization_config": {**q, "weight_block_size": [128]}})
  with pytest.raises(ValueError, match="quant_method 'gptq'"):
    hf_config.fp8_block_size({"quantization_config": {"quant_method": "gptq"}})


def test_mtp_layers_skipped(tiny, tmp_path, caplog):
  path, ref, tensors, _ = _fp8_checkpoint(tiny, tmp_path / "fp8", (16, 16), mtp=True)
  n_mtp = sum(k.startswith((f"model.layers.{N_LAYERS}.", f"model.layers.{N_LAYERS + 1}.")) for k in tensors)
  assert n_mtp > 80
  with caplog.at_level(logging.INFO, logger="r1jax.convert.hf"):
    cfg, model = load_hf_model(path)
  assert cfg.n_layers == N_LAYERS
  lines = [r.getMessage() for r in caplog.records if "multi-token-prediction" in r.getMessage()]
  assert len(lines) == 1 and f"skipping {n_mtp} multi-token-prediction tensors" in lines[0], lines
  assert _max_diff(model, ref) <= TOL
  # Other unexpected tensors are still an error, and so is fp8 without its scale.
  stray = dict(tensors)
  stray["model.layers.0.self_attn.extra_proj.weight"] = np.zeros((4, 4), np.float32)
  bad = _write(tmp_path / "stray", stray, json.load(open(os.path.join(path, "config.json"))))
  with pytest.raises(ValueError, match=r"1 checkpoint tensors have no r1jax parameter.*extra_proj"):
    load_hf_model(bad)
  unscaled = {k: v for k, v in tensors.items() if k != "model.layers.0.self_attn.o_proj.weight_scale_inv"}
  bad = _write(tmp_path / "unscaled", unscaled, json.load(open(os.path.join(path, "config.json"))))
  with pytest.raises(ValueError, match=r"fp8 tensor 'model\.layers\.0\.self_attn\.o_proj\.weight' has no"):
    load_hf_model(bad)


def test_quantize_blockwise_is_a_fixed_point():
  """quantize(dequantize(quantize(w))) == quantize(w), bit for bit, for any block shape."""
  rng = np.random.default_rng(1)
  for block in [(128, 128), (16, 16), (7, 33)]:
    w = (rng.standard_normal((300, 200)) * 10.0 ** rng.uniform(-4, 1, (300, 1))).astype(np.float32)
    w[:16, :16] = 0  # an all-zero block
    q, s = quantize_blockwise(w, block)
    assert q.dtype == FP8 and s.dtype == np.float32 and s.shape == (-(-300 // block[0]), -(-200 // block[1]))
    d = dequantise_ref(q, s, *block)
    s_elem = np.repeat(np.repeat(s, block[0], 0), block[1], 1)[:300, :200]
    assert np.all(np.abs(d - w) <= np.abs(w) / 16 + s_elem * 2.0 ** -10)  # e4m3's half-spacing (subnormals: 2^-10)
    q2, s2 = quantize_blockwise(d, block)
    np.testing.assert_array_equal(q2.view(np.uint8), q.view(np.uint8))
    np.testing.assert_array_equal(s2, s)
  with pytest.raises(ValueError, match="w: non-finite"):
    quantize_blockwise(np.full((4, 4), np.inf, np.float32), (2, 2), name="w")


def test_fp8_export_round_trip(tiny, tmp_path):
  """An fp32 model -> fp8 export -> load (= the export's dequantised values) -> fp8 export: same bytes."""
  import torch

  hf_model, state, config = tiny
  plain = _write(tmp_path / "plain", _to_disk(state), config)
  _, model = load_hf_model(plain)
  e1 = save_hf_model(model, str(tmp_path / "e1"), fp8=True, fp8_block_size=(16, 16))
  c1 = json.load(open(os.path.join(e1, "config.json")))
  assert c1["quantization_config"] == {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                       "weight_block_size": [16, 16]}
  raw = _read_raw(e1)
  deq = {k: dequantise_ref(v, raw[k + "_scale_inv"], 16, 16) for k, v in raw.items() if v.dtype == FP8}
  assert set(deq) == {k for k in _to_disk(state) if _quantised(k)}
  _, model1 = load_hf_model(e1)
  loaded = _exported(model1)
  for k, v in deq.items():
    np.testing.assert_array_equal(loaded[k], v, err_msg=k)
  ref = type(hf_model)(hf_model.config).eval()
  ref.load_state_dict({k: torch.from_numpy(v) for k, v in _to_torch({**_to_disk(state), **deq}, state).items()})
  assert _max_diff(model1, ref, seed=1) <= TOL
  e2 = save_hf_model(model1, str(tmp_path / "e2"), fp8=True, fp8_block_size=(16, 16))
  for f in ("model.safetensors", "config.json"):
    assert open(os.path.join(e1, f), "rb").read() == open(os.path.join(e2, f), "rb").read(), f


def test_fp8_export_layout(tiny, tmp_path):
  """Re-exporting an fp8 checkpoint gives its tensor set, fp8 codes and scales; default 128x128
  blocks with bf16 for everything unquantised (DeepSeek-V3's own layout)."""
  path, ref, tensors, deq = _fp8_checkpoint(tiny, tmp_path / "fp8", (16, 16))
  _, model = load_hf_model(path)
  e1 = save_hf_model(model, str(tmp_path / "e1"), fp8=True, fp8_block_size=(16, 16))
  raw = _read_raw(e1)
  assert set(raw) == set(tensors)  # the same tensors, and the same ones quantised
  for k, v in raw.items():
    if k in deq:
      assert v.dtype == FP8 and raw[k + "_scale_inv"].shape == tensors[k + "_scale_inv"].shape
      np.testing.assert_array_equal(v.view(np.uint8), tensors[k].view(np.uint8), err_msg=k)
      np.testing.assert_array_equal(raw[k + "_scale_inv"], tensors[k + "_scale_inv"], err_msg=k)
    elif not k.endswith("_scale_inv"):
      assert v.dtype == np.float32, k
  e3 = save_hf_model(model, str(tmp_path / "e3"), dtype="bfloat16", fp8=True)
  c3 = json.load(open(os.path.join(e3, "config.json")))
  assert c3["quantization_config"]["weight_block_size"] == [128, 128] and c3["torch_dtype"] == "bfloat16"
  raw = _read_raw(e3)
  kv_a = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"  # [108, 200]
  assert raw[kv_a].dtype == FP8 and raw[kv_a + "_scale_inv"].shape == (1, 2)
  assert raw["model.layers.0.mlp.gate_proj.weight_scale_inv"].shape == (3, 2)  # [300, 200]
  assert raw["model.layers.1.mlp.experts.3.down_proj.weight_scale_inv"].shape == (2, 1)  # [200, 72]
  for k in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.1.mlp.gate.weight",
            "model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.kv_a_layernorm.weight"):
    assert raw[k].dtype == ml_dtypes.bfloat16, k
  assert raw["model.layers.1.mlp.gate.e_score_correction_bias"].dtype == np.float32
  _, model3 = load_hf_model(e3)
  assert _max_diff(model3, ref) < 0.25  # re-quantised in other blocks (and bf16): close, not equal
