"""Read and write safetensors checkpoints tensor by tensor (numpy; no torch).

Tensors are read from the header's byte offsets (a memory map locally, a ranged read on object
stores), bf16 and fp8 as `ml_dtypes` arrays. DeepSeek-V3's blockwise fp8 weights (float8_e4m3fn `W`
[M, N] with a float32 `W_scale_inv` [ceil(M/bm), ceil(N/bn)], one scale per bm x bn block, the last
row/column of blocks partial; bm x bn is config.json's `quantization_config.weight_block_size`,
128 x 128 by default) are dequantised on read, and `quantize_blockwise` writes them.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Iterable, Mapping

import ml_dtypes
import numpy as np

from r1jax import fs

_RAW_DTYPES = {
    "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
}
_NAME_OF = {np.dtype(v): k for k, v in _RAW_DTYPES.items()}
_NAME_OF.update({np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
                 np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.bool_): "BOOL"})


_DTYPES = {
    **_RAW_DTYPES, "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


FP8_BLOCK = (128, 128)  # DeepSeek-V3's quantization_config.weight_block_size
FP8_MAX = 448.0  # the largest finite float8_e4m3fn
_FP8 = (np.dtype(ml_dtypes.float8_e4m3fn), np.dtype(ml_dtypes.float8_e5m2))


def _header(path: str) -> tuple[dict, int]:
  """(the JSON header, the byte offset where tensor data starts)."""
  with fs.open_file(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    return json.loads(f.read(n)), 8 + n


class TensorReader:
  """All tensors of a checkpoint directory (single file or sharded with an index), read lazily:
  memory-mapped on local disks, by byte range on object stores (`gs://…`)."""

  def __init__(self, directory: str, weight_block_size: tuple[int, int] = FP8_BLOCK):
    self.directory = directory
    self.block = tuple(weight_block_size)
    index = fs.join(directory, "model.safetensors.index.json")
    if fs.exists(index):
      weight_map = fs.read_json(index)["weight_map"]
      self.where = {k: fs.join(directory, v) for k, v in weight_map.items()}
    else:
      files = [p for p in fs.listdir(directory) if p.endswith(".safetensors")]
      if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors files and no model.safetensors.index.json")
      self.where = {}
      for p in files:
        full = fs.join(directory, p)
        for k in _header(full)[0]:
          if k != "__metadata__":
            self.where[k] = full
    self._headers: dict[str, tuple[dict, int]] = {}

  def keys(self) -> set[str]:
    return set(self.where)

  def __contains__(self, name: str) -> bool:
    return name in self.where

  def _info(self, name: str) -> tuple[str, dict, int]:
    path = self.where[name]
    if path not in self._headers:
      self._headers[path] = _header(path)
    h, base = self._headers[path]
    return path, h[name], base

  def get(self, name: str, dtype=np.float32, dequantize: bool = True) -> np.ndarray:
    """The tensor as stored; a block-scaled fp8 weight (one with `<name>_scale_inv`) dequantised
    into `dtype` unless `dequantize=False`."""
    if name not in self.where:
      raise KeyError(f"{self.directory}: tensor {name!r} not found in the checkpoint")
    path, info, base = self._info(name)
    if info["dtype"] not in _DTYPES:
      raise ValueError(f"{path}: tensor {name!r} has dtype {info['dtype']}, which r1jax does not read")
    raw_dtype = np.dtype(_DTYPES[info["dtype"]])
    start, end = info["data_offsets"]
    if fs.is_remote(path):
      with fs.open_file(path, "rb") as f:
        f.seek(base + start)
        raw = np.frombuffer(f.read(end - start), np.uint8)
    else:
      raw = np.memmap(path, dtype=np.uint8, mode="r", offset=base + start, shape=(end - start,))
    out = np.asarray(raw).view(raw_dtype).reshape(info["shape"])
    if not dequantize or out.dtype not in _FP8:
      return out
    scale_name = name + "_scale_inv"
    if scale_name not in self.where:
      raise ValueError(f"{path}: fp8 tensor {name!r} has no {scale_name!r}; r1jax reads block-scaled fp8 only")
    return dequantize_blockwise(out, self.get(scale_name), self.block, dtype, name=f"{path}: tensor {name!r}")


def _scale_grid(shape: tuple[int, ...], block: tuple[int, int], name: str) -> tuple[int, int]:
  if len(shape) != 2:
    raise ValueError(f"{name}: block-scaled fp8 needs a 2-D weight, got shape {tuple(shape)}")
  (m, n), (bm, bn) = shape, block
  return -(-m // bm), -(-n // bn)


def _per_element(scale: np.ndarray, block: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
  """Block (i, j)'s scale at rows i*bm..min((i+1)*bm, M), cols j*bn..min((j+1)*bn, N)."""
  return np.repeat(np.repeat(scale, block[0], 0), block[1], 1)[:shape[0], :shape[1]]


def dequantize_blockwise(w: np.ndarray, scale_inv: np.ndarray, block: tuple[int, int] = FP8_BLOCK,
                         dtype=np.float32, name: str = "tensor") -> np.ndarray:
  """fp8 w [M, N] times its block's float32 scale (the multiply in float32), cast to `dtype`.
  The scale grid must be exactly [ceil(M/bm), ceil(N/bn)]."""
  grid = _scale_grid(w.shape, block, name)
  if tuple(scale_inv.shape) != grid:
    raise ValueError(f"{name}: scale_inv has shape {tuple(scale_inv.shape)}, expected {grid} for weight "
                     f"{tuple(w.shape)} in {block[0]}x{block[1]} blocks (quantization_config.weight_block_size)")
  s = _per_element(np.asarray(scale_inv, np.float32), block, w.shape)
  return (w.astype(np.float32) * s).astype(dtype)


def quantize_blockwise(w: np.ndarray, block: tuple[int, int] = FP8_BLOCK, name: str = "tensor") -> tuple[np.ndarray, np.ndarray]:
  """(float8_e4m3fn q [M, N], float32 scale_inv [ceil(M/bm), ceil(N/bn)]) with w ~= q * scale_inv:
  per block scale_inv = amax / 448 in float32 (1 for an all-zero block), q = e4m3(w / scale_inv).
  Exact on the grid: the block maximum dequantises to float32(448 * s), and float32(that / 448)
  is s again (checked exhaustively over a binade of normal floats), so quantising a float32 dequantised (q, s)
  gives back the same bytes."""
  w = np.asarray(w, np.float32)
  gm, gn = _scale_grid(w.shape, block, name)
  if not np.isfinite(w).all():
    raise ValueError(f"{name}: non-finite values cannot be quantised to fp8")
  (m, n), (bm, bn) = w.shape, block
  padded = np.zeros((gm * bm, gn * bn), np.float32)
  padded[:m, :n] = np.abs(w)
  amax = padded.reshape(gm, bm, gn, bn).max(axis=(1, 3))
  s = np.where(amax > 0, amax / np.float32(FP8_MAX), np.float32(1)).astype(np.float32)
  q = np.clip(w / _per_element(s, block, w.shape), -FP8_MAX, FP8_MAX)
  return q.astype(ml_dtypes.float8_e4m3fn), s


def save_file(tensors: Mapping[str, np.ndarray], path: str, metadata: Mapping[str, str] | None = None) -> None:
  """Writes one safetensors file (any dtype above, bf16 included)."""
  header, offset, order = {}, 0, sorted(tensors)
  for k in order:
    a = np.ascontiguousarray(tensors[k])
    header[k] = {"dtype": _NAME_OF[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
    offset += a.nbytes
  header["__metadata__"] = dict(metadata or {"format": "pt"})
  raw = json.dumps(header, separators=(",", ":")).encode()
  raw += b" " * (-len(raw) % 8)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(raw)))
    f.write(raw)
    for k in order:
      f.write(np.ascontiguousarray(tensors[k]).tobytes())
  os.replace(tmp, path)


def save_sharded(tensors: Iterable[tuple[str, np.ndarray]], directory: str, max_shard_bytes: int = 5 << 30) -> list[str]:
  """Streams (name, array) pairs into shards of at most max_shard_bytes (each written as soon as it
  is full, so host memory holds one shard), plus the HF index file when there is more than one."""
  os.makedirs(directory, exist_ok=True)
  written: list[tuple[str, list[str]]] = []  # (temporary file, tensor names)
  shard: dict[str, np.ndarray] = {}
  size = total = 0

  def flush():
    tmp = os.path.join(directory, f".shard-{len(written):05d}.safetensors")
    save_file(shard, tmp)
    written.append((tmp, list(shard)))

  for name, arr in tensors:
    if shard and size + arr.nbytes > max_shard_bytes:
      flush()
      shard, size = {}, 0
    shard[name] = arr
    size += arr.nbytes
    total += arr.nbytes
  flush()
  if len(written) == 1:
    os.replace(written[0][0], os.path.join(directory, "model.safetensors"))
    return ["model.safetensors"]
  names, weight_map = [], {}
  for i, (tmp, keys) in enumerate(written):
    fname = f"model-{i + 1:05d}-of-{len(written):05d}.safetensors"
    os.replace(tmp, os.path.join(directory, fname))
    names.append(fname)
    weight_map.update({k: fname for k in keys})
  with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
  return names
