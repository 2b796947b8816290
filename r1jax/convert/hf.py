"""Hugging Face checkpoints in and out: config.json + *.safetensors <-> the r1jax parameter tree.

Loading is tensor by tensor: each r1jax parameter is assembled on the host from its HF tensor(s)
(per-expert tensors are stacked) and placed straight into its target sharding with
`jax.make_array_from_callback`, so host memory holds one parameter at a time and no device ever
holds a whole sharded parameter.

Name maps (HF -> r1jax), with torch Linear weights [out, in] transposed to [in, out]:
  model.embed_tokens.weight            embed_tokens                 [V, D]
  lm_head.weight                       lm_head                      [D, V]   (absent when tied)
  model.layers.i.self_attn.{q,k,v}_proj.{weight,bias} -> {q,k,v}_proj.{kernel [D, H, hd], bias [H, hd]}
  ...self_attn.o_proj.weight           o_proj.kernel                [H, hd, D]
  MLA: q_a_proj, q_a_layernorm, q_b_proj, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj
  ...mlp.{gate,up,down}_proj           mlp.{gate,up,down}_proj.kernel
  ...mlp.gate.weight [E, D]            mlp.gate [D, E];   mlp.gate.e_score_correction_bias -> mlp.e_score_correction_bias
  ...mlp.experts.j.{gate,up,down}_proj (Mixtral: block_sparse_moe.experts.j.{w1,w3,w2})
                                       mlp.w_gate / w_up [E, D, F], mlp.w_down [E, F, D]
  ...mlp.experts.gate_up_proj [E, 2F, D] / down_proj [E, D, F]  (fused layout) -> the same stacks
  ...mlp.shared_experts.{gate,up,down}_proj -> mlp.shared_experts.*

Blockwise fp8 checkpoints (DeepSeek-V3: float8_e4m3fn `*.weight` + float32 `*.weight_scale_inv`,
config.json `quantization_config.weight_block_size`) are dequantised into the requested dtype on
read; `save_hf_model(..., fp8=True)` writes that layout. Tensors of layers >= num_hidden_layers
(DeepSeek-V3's multi-token-prediction module, `model.layers.61.*`) are skipped.
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Callable, Iterator, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from r1jax import fs
from r1jax.convert import hf_config, safetensors_io
from r1jax.models.config import ModelConfig
from r1jax.models.transformer import Transformer
from r1jax.parallel import sharding as shd
from r1jax.parallel.multihost import host_get

log = logging.getLogger(__name__)

Reader = Callable[[str], np.ndarray]


def _is_var(x):
  return isinstance(x, nnx.Variable)


def _key(path) -> str:
  return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def flat_variables(state) -> dict[str, nnx.Variable]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_var)
  return {_key(p): v for p, v in leaves}


def _moe_prefix(names: set[str], i: int) -> str:
  return "block_sparse_moe" if f"model.layers.{i}.block_sparse_moe.gate.weight" in names else "mlp"


def _expert_names(names: set[str], i: int, j: int) -> tuple[str, str, str]:
  pre = f"model.layers.{i}.{_moe_prefix(names, i)}.experts.{j}"
  if f"{pre}.w1.weight" in names:
    return f"{pre}.w1.weight", f"{pre}.w3.weight", f"{pre}.w2.weight"
  return f"{pre}.gate_proj.weight", f"{pre}.up_proj.weight", f"{pre}.down_proj.weight"


def hf_tensor_for(path: str, shape: tuple[int, ...], read: Reader, names: set[str], cfg: ModelConfig) -> np.ndarray:
  """The r1jax value (host numpy) for one parameter path, built from the HF tensors."""
  parts = path.split(".")
  if path == "embed_tokens":
    return read("model.embed_tokens.weight")
  if path == "lm_head":
    return read("lm_head.weight").T
  if path == "norm.weight":
    return read("model.norm.weight")
  assert parts[0] == "layers", path
  i, rest = int(parts[1]), parts[2:]
  pre = f"model.layers.{i}"
  if rest[0] == "mlp" and rest[1] in ("gate", "e_score_correction_bias", "w_gate", "w_up", "w_down"):
    moe = f"{pre}.{_moe_prefix(names, i)}"
    if rest[1] == "gate":
      return read(f"{moe}.gate.weight").T
    if rest[1] == "e_score_correction_bias":
      return read(f"{moe}.gate.e_score_correction_bias")
    E, F = cfg.n_routed_experts, cfg.moe_ffn_dim
    if f"{moe}.experts.gate_up_proj" in names:  # fused layout [E, 2F, D] / [E, D, F]
      if rest[1] == "w_down":
        return np.swapaxes(read(f"{moe}.experts.down_proj"), 1, 2)
      gu = read(f"{moe}.experts.gate_up_proj")
      return np.swapaxes(gu[:, :F] if rest[1] == "w_gate" else gu[:, F:], 1, 2)
    k = {"w_gate": 0, "w_up": 1, "w_down": 2}[rest[1]]
    out = None
    for j in range(E):
      w = read(_expert_names(names, i, j)[k]).T
      if out is None:
        out = np.empty((E,) + w.shape, w.dtype)
      out[j] = w
    return out
  hf = f"{pre}." + ".".join(rest[:-1])
  if rest[0] == "mlp" and _moe_prefix(names, i) != "mlp":
    hf = hf.replace(".mlp.", f".{_moe_prefix(names, i)}.", 1)
  leaf = rest[-1]
  if leaf in ("kernel", "bias"):
    name = hf + (".weight" if leaf == "kernel" else ".bias")
    w = read(name).T
    if w.size != int(np.prod(shape)):
      raise ValueError(f"parameter {path} has shape {tuple(w.shape)} on disk ({name}), expected {tuple(shape)}")
    return w.reshape(shape)
  if leaf == "weight":  # norms
    return read(hf + ".weight")
  raise KeyError(f"no HF name for r1jax parameter {path!r}")


_LAYER = re.compile(r"model\.layers\.(\d+)\.")


def _layer_of(name: str) -> int:
  """The decoder layer index of an HF tensor name (-1 for embeddings, final norm, head)."""
  m = _LAYER.match(name)
  return int(m.group(1)) if m else -1


def _place(host: np.ndarray, sharding, dtype) -> jax.Array:
  host = np.asarray(host).astype(dtype)
  if sharding is None:
    return jnp.asarray(host)
  return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def read_hf_config(path: str) -> dict:
  cfg_path = fs.join(path, "config.json")
  if not fs.exists(cfg_path):
    raise FileNotFoundError(f"{path}: no config.json (expected a Hugging Face checkpoint directory)")
  return fs.read_json(cfg_path)


def load_hf_model(path: str, mesh: Optional[Mesh] = None, dtype: Optional[str] = None,
                  rules: Mapping = shd.RULES, **overrides) -> tuple[ModelConfig, Transformer]:
  """Loads a HF checkpoint directory into a (sharded, when `mesh` is given) r1jax Transformer.

  dtype sets both param_dtype and activation dtype (default: float32); `overrides` are
  ModelConfig fields (e.g. moe_backend="ragged", remat="full").
  """
  hf = read_hf_config(path)
  reader = safetensors_io.TensorReader(path, hf_config.fp8_block_size(hf))
  mtp = {n for n in reader.keys() if _layer_of(n) >= hf.get("num_hidden_layers", float("inf"))}
  names = reader.keys() - mtp
  if dtype is not None:
    overrides = {"param_dtype": dtype, "dtype": dtype, **overrides}
  cfg = hf_config.from_hf_config(hf, names, **overrides)
  target = jnp.dtype(cfg.param_dtype)  # fp8 weights are dequantised straight into it
  abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
  graphdef, abs_state = nnx.split(abstract)
  shardings = shd.state_shardings(abs_state, mesh, rules) if mesh is not None else None
  flat_sh = flat_variables(shardings) if shardings is not None else {}

  used: set[str] = set()

  def read(name: str) -> np.ndarray:
    used.add(name)
    return reader.get(name, dtype=target)

  def one(p, v):
    key = _key(p)
    try:
      host = hf_tensor_for(key, v.shape, read, names, cfg)
    except ValueError as e:
      raise ValueError(f"{path}: {e}") from e
    if tuple(host.shape) != tuple(v.shape):
      raise ValueError(f"{path}: parameter {key} has shape {tuple(host.shape)} on disk, expected {tuple(v.shape)}")
    sh = flat_sh.get(key)
    return v.replace(_place(host, sh, v.dtype))

  state = jax.tree_util.tree_map_with_path(one, abs_state, is_leaf=_is_var)
  if mtp:
    log.info("%s: skipping %d multi-token-prediction tensors (layers >= num_hidden_layers = %d)",
             path, len(mtp), hf["num_hidden_layers"])
  scale = "_scale_inv"
  other = sorted(n for n in names - used if "rotary_emb" not in n
                 and not (n.endswith(scale) and n[:-len(scale)] in used))
  if other:
    raise ValueError(f"{path}: {len(other)} checkpoint tensors have no r1jax parameter, e.g. {other[:5]}")
  return cfg, nnx.merge(graphdef, state)


# ------------------------------------------------------------------ export


_FP8_LINEARS = {"q_proj", "k_proj", "v_proj", "o_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj",
                "gate_proj", "up_proj", "down_proj", "w1", "w2", "w3"}


def is_fp8_weight(name: str, a: np.ndarray) -> bool:
  """What DeepSeek-V3's fp8 checkpoints quantise: the 2-D linear weights of attention and the MLP /
  (shared) experts. Embeddings, norms, the router gate (`*.gate.weight`) and lm_head stay in dtype."""
  parts = name.split(".")
  return parts[:2] == ["model", "layers"] and parts[-1] == "weight" and parts[-2] in _FP8_LINEARS and a.ndim == 2


def hf_tensors(model: Transformer, dtype: Optional[str] = None,
               fp8_block_size: Optional[Sequence[int]] = None) -> Iterator[tuple[str, np.ndarray]]:
  """(HF name, numpy array) pairs in the on-disk layout (per-expert tensors), one at a time.
  With fp8_block_size, the `is_fp8_weight` tensors are written as float8_e4m3fn with a float32
  `<name>_scale_inv` per block, quantised from the float32 parameter values."""
  cfg = model.cfg
  family = hf_config.hf_family(cfg)
  moe_name = "block_sparse_moe" if family == "mixtral" else "mlp"
  np_dtype = np.dtype(ml_dtypes.bfloat16) if (dtype or cfg.param_dtype) == "bfloat16" else np.dtype(dtype or np.float32)

  block = hf_config.check_block_size(tuple(fp8_block_size)) if fp8_block_size is not None else None

  def host(v) -> np.ndarray:
    # One tensor at a time; a tensor sharded over several processes is all-gathered (every
    # process must iterate, `drain_hf_tensors`), so no host ever holds the whole model at once.
    # Not cast here: cast (or quantised) per HF tensor below, so fp8 scales see the unrounded values.
    return np.asarray(host_get(v[...]))

  for name, a in _hf_layout(model, host, family, moe_name):
    if name.endswith("e_score_correction_bias"):  # RouterBias: float32 whatever dtype
      yield name, a.astype(np.float32)
    elif block is not None and is_fp8_weight(name, a):
      q, s = safetensors_io.quantize_blockwise(a, block, name)
      yield name, q
      yield name + "_scale_inv", s
    else:
      yield name, np.ascontiguousarray(a, dtype=np_dtype)


def _hf_layout(model: Transformer, host, family: str, moe_name: str) -> Iterator[tuple[str, np.ndarray]]:
  """(HF name, host array in the parameter's own dtype) in the on-disk layout."""
  for key, v in flat_variables(nnx.state(model)).items():
    parts = key.split(".")
    if key == "embed_tokens":
      yield "model.embed_tokens.weight", host(v)
      continue
    if key == "lm_head":
      yield "lm_head.weight", host(v).T
      continue
    if key == "norm.weight":
      yield "model.norm.weight", host(v)
      continue
    i, rest = int(parts[1]), parts[2:]
    pre = f"model.layers.{i}"
    a = host(v)
    if rest[0] == "mlp" and rest[1] in ("gate", "e_score_correction_bias", "w_gate", "w_up", "w_down"):
      moe = f"{pre}.{moe_name}"
      if rest[1] == "gate":
        yield f"{moe}.gate.weight", a.T
      elif rest[1] == "e_score_correction_bias":
        yield f"{moe}.gate.e_score_correction_bias", a
      else:
        for j in range(a.shape[0]):
          names = (f"{moe}.experts.{j}.w1.weight", f"{moe}.experts.{j}.w3.weight", f"{moe}.experts.{j}.w2.weight") \
              if family == "mixtral" else _expert_names(set(), i, j)
          yield names[{"w_gate": 0, "w_up": 1, "w_down": 2}[rest[1]]], a[j].T
      continue
    hf = f"{pre}." + ".".join(rest[:-1])
    leaf = rest[-1]
    if leaf == "kernel":
      n_in = 2 if rest[-2] == "o_proj" else 1  # o_proj contracts (heads, head_dim); others one dim
      yield hf + ".weight", a.reshape(int(np.prod(a.shape[:n_in])), -1).T
    elif leaf == "bias":
      yield hf + ".bias", a.reshape(-1)
    else:
      yield hf + ".weight", a


def drain_hf_tensors(model: Transformer, dtype: Optional[str] = None) -> None:
  """What the processes that do not write an export run while process 0 writes it: the same
  per-tensor gathers (collectives), nothing written."""
  for _ in hf_tensors(model, dtype):
    pass


def save_hf_model(model: Transformer, path: str, *, dtype: Optional[str] = None,
                  max_shard_bytes: int = 5 << 30, extra_config: Optional[dict] = None,
                  fp8: bool = False, fp8_block_size: Sequence[int] = hf_config.FP8_BLOCK) -> str:
  """Writes config.json + safetensors (sharded with an index past max_shard_bytes) in HF layout.
  fp8=True writes DeepSeek-V3's blockwise fp8 layout (`is_fp8_weight` tensors as float8_e4m3fn +
  float32 `*_scale_inv`, one scale per fp8_block_size block; the rest in dtype) and its
  quantization_config. A bucket path (gs://…) is written locally first and uploaded with config.json last."""
  if fs.is_remote(path):
    with fs.staged_dir(path, last=("config.json",)) as local:
      save_hf_model(model, local, dtype=dtype, max_shard_bytes=max_shard_bytes, extra_config=extra_config,
                    fp8=fp8, fp8_block_size=fp8_block_size)
    return path
  os.makedirs(path, exist_ok=True)
  cfg_dict = hf_config.to_hf_config(model.cfg)
  if dtype:
    cfg_dict["torch_dtype"] = dtype
  if fp8:
    cfg_dict["quantization_config"] = hf_config.fp8_quantization_config(tuple(fp8_block_size))
  cfg_dict.update(extra_config or {})
  safetensors_io.save_sharded(hf_tensors(model, dtype, fp8_block_size if fp8 else None), path, max_shard_bytes)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(cfg_dict, f, indent=2)
  return path
