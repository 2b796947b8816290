"""Read and write safetensors checkpoints tensor by tensor (numpy; no torch).

safetensors' numpy API covers the IEEE dtypes; bf16 and fp8 tensors are read through a memory map
as `ml_dtypes` arrays, and DeepSeek-V3's blockwise-fp8 weights (`*.weight_scale_inv`, 128x128
blocks) are dequantised on read.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Iterable, Mapping

import ml_dtypes
import numpy as np
from safetensors import safe_open

_RAW_DTYPES = {
    "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
}
_NAME_OF = {np.dtype(v): k for k, v in _RAW_DTYPES.items()}
_NAME_OF.update({np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
                 np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.bool_): "BOOL"})


def _header(path: str) -> dict:
  with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    return json.loads(f.read(n))


class TensorReader:
  """All tensors of a checkpoint directory (single file or sharded with an index), read lazily."""

  def __init__(self, directory: str):
    self.directory = directory
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
      with open(index) as f:
        weight_map = json.load(f)["weight_map"]
      self.where = {k: os.path.join(directory, v) for k, v in weight_map.items()}
    else:
      files = sorted(p for p in os.listdir(directory) if p.endswith(".safetensors"))
      if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors files and no model.safetensors.index.json")
      self.where = {}
      for p in files:
        full = os.path.join(directory, p)
        for k in _header(full):
          if k != "__metadata__":
            self.where[k] = full
    self._headers: dict[str, dict] = {}

  def keys(self) -> set[str]:
    return set(self.where)

  def __contains__(self, name: str) -> bool:
    return name in self.where

  def _info(self, name: str) -> tuple[str, dict, int]:
    path = self.where[name]
    if path not in self._headers:
      with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
      self._headers[path] = (_header(path), 8 + n)
    h, base = self._headers[path]
    return path, h[name], base

  def get(self, name: str) -> np.ndarray:
    if name not in self.where:
      raise KeyError(f"{self.directory}: tensor {name!r} not found in the checkpoint")
    path, info, base = self._info(name)
    if info["dtype"] in _RAW_DTYPES:
      start, end = info["data_offsets"]
      arr = np.memmap(path, dtype=np.uint8, mode="r", offset=base + start, shape=(end - start,))
      out = np.asarray(arr).view(_RAW_DTYPES[info["dtype"]]).reshape(info["shape"])
    else:
      with safe_open(path, framework="np") as f:
        out = f.get_tensor(name)
    scale_name = name + "_scale_inv"
    if out.dtype in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2) and scale_name in self.where:
      out = dequantize_blockwise(out, self.get(scale_name))
    return out


def dequantize_blockwise(w: np.ndarray, scale_inv: np.ndarray) -> np.ndarray:
  """DeepSeek-V3 fp8: w [M, N] with one scale per (bm x bn) block; the block size follows from shapes."""
  m, n = w.shape
  bm, bn = -(-m // scale_inv.shape[0]), -(-n // scale_inv.shape[1])
  s = np.repeat(np.repeat(scale_inv.astype(np.float32), bm, 0), bn, 1)[:m, :n]
  return (w.astype(np.float32) * s).astype(ml_dtypes.bfloat16)


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
