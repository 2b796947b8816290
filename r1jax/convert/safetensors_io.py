"""Read and write safetensors checkpoints tensor by tensor (numpy; no torch).

Tensors are read from the header's byte offsets (a memory map locally, a ranged read on object
stores), bf16 and fp8 as `ml_dtypes` arrays, and DeepSeek-V3's blockwise-fp8 weights (`*.weight_scale_inv`, 128x128
blocks) are dequantised on read.
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


def _header(path: str) -> tuple[dict, int]:
  """(the JSON header, the byte offset where tensor data starts)."""
  with fs.open_file(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    return json.loads(f.read(n)), 8 + n


class TensorReader:
  """All tensors of a checkpoint directory (single file or sharded with an index), read lazily:
  memory-mapped on local disks, by byte range on object stores (`gs://…`)."""

  def __init__(self, directory: str):
    self.directory = directory
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

  def get(self, name: str) -> np.ndarray:
    if name not in self.where:
      raise KeyError(f"{self.directory}: tensor {name!r} not found in the checkpoint")
    path, info, base = self._info(name)
    if info["dtype"] not in _DTYPES:
      raise ValueError(f"{path}: tensor {name!r} has dtype {info['dtype']}, which r1jax does not read")
    dtype = np.dtype(_DTYPES[info["dtype"]])
    start, end = info["data_offsets"]
    if fs.is_remote(path):
      with fs.open_file(path, "rb") as f:
        f.seek(base + start)
        raw = np.frombuffer(f.read(end - start), np.uint8)
    else:
      raw = np.memmap(path, dtype=np.uint8, mode="r", offset=base + start, shape=(end - start,))
    out = np.asarray(raw).view(dtype).reshape(info["shape"])
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
