"""What every stage runner shares: mesh, tokenizer, policy initialisation, task rewards, export.

Stages hand over through HF-format exports: a stage ends by writing `<workdir>/final/`
(config.json + safetensors + tokenizer), and the next stage's `model.init_from` points there (or
at any Hugging Face checkpoint directory), so every stage boundary is also a servable artifact.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
from typing import Any, Callable, Optional

import jax
from flax import nnx

from r1jax import fs
from r1jax.models.presets import get_preset
from r1jax.models.sharded import create_sharded_model
from r1jax.parallel.mesh import init_distributed, make_mesh
from r1jax.parallel.multihost import sync

log = logging.getLogger(__name__)

FINAL = "final"
TOKENIZER_FILE = "tokenizer.model"


def start_distributed(cfg) -> None:
  """Multi-host: must run before anything touches a JAX device. num_processes 0 = discover (TPU
  VMs); > 1 = explicit coordinator / process id (GPU hosts); 1 = single process."""
  dist = cfg.get("distributed", None)
  if dist is None:
    return
  n = int(dist.get("num_processes", 1))
  ids = local_device_ids(dist.get("local_device_ids", ""))
  if n == 0:
    init_distributed(local_device_ids=ids)
  elif n > 1:
    init_distributed(dist.get("coordinator_address") or None, n, int(dist.get("process_id", 0)), local_device_ids=ids)


def local_device_ids(value) -> Optional[list[int]]:
  """config.distributed.local_device_ids ("0,1,2,3", a tuple, or "" for JAX's choice) -> ids."""
  if value in ("", None, ()):
    return None
  parts = value.split(",") if isinstance(value, str) else list(value)
  try:
    ids = [int(p) for p in parts]
  except (TypeError, ValueError):
    raise ValueError(f"config.distributed.local_device_ids: expected comma-separated device ids "
                     f"such as 0,1,2,3, got {value!r}") from None
  if len(set(ids)) != len(ids) or min(ids) < 0:
    raise ValueError(f"config.distributed.local_device_ids: ids must be distinct and >= 0, got {value!r}")
  return ids


def build_mesh(cfg) -> jax.sharding.Mesh:
  shape = dict(cfg.mesh) if cfg.get("mesh") else {"fsdp": -1}
  return make_mesh(shape)


def load_tokenizer(cfg, workdir: Optional[str] = None):
  """cfg.tokenizer.path: a sentencepiece .model, a tokenizer.json, or a directory holding one; or
  cfg.model.init_from's tokenizer when path is empty; or, with tokenizer.train_corpus set, a
  sentencepiece model trained in-process on that synthetic corpus (saved in the workdir)."""
  from r1jax.data.tokenizer import load_tokenizer as load

  path = cfg.tokenizer.get("path", "") if cfg.get("tokenizer") else ""
  if not path and cfg.model.get("init_from"):
    path = cfg.model.init_from
  if not path and cfg.tokenizer.get("train_corpus") and workdir:
    path = train_tokenizer(cfg.tokenizer, workdir)
    with cfg.tokenizer.unlocked() if hasattr(cfg.tokenizer, "unlocked") else contextlib.nullcontext():
      cfg.tokenizer.path = path
  if not path:
    raise ValueError("config.tokenizer.path: no tokenizer given (and model.init_from has none)")
  return load(path)  # a directory: its tokenizer.json, else its tokenizer.model


def train_tokenizer(tcfg, workdir: str) -> str:
  """Trains (once) a sentencepiece tokenizer on a synthetic corpus; returns the .model path."""
  from r1jax.data.tasks import corpora
  from r1jax.data.tokenizer import train_sentencepiece

  path = fs.join(workdir, TOKENIZER_FILE)
  if not fs.exists(path) and jax.process_index() == 0:
    lines = []
    for name in str(tcfg.train_corpus).split(","):
      for rec in getattr(corpora, f"{name.strip()}_corpus")(seed=int(tcfg.get("seed", 0))):
        lines.extend(str(v) for k, v in rec.items() if isinstance(v, str) and k not in ("id", "task", "language"))
    fs.write_bytes(path, train_sentencepiece(lines, vocab_size=int(tcfg.vocab_size)).model_proto)
  sync("tokenizer trained")  # the others read process 0's file (a shared workdir, or a bucket)
  return path


def model_overrides(cfg) -> dict[str, Any]:
  return dict(cfg.model.get("overrides", {}) or {})


def init_policy(cfg, mesh, vocab_size: Optional[int] = None):
  """A sharded policy: from model.init_from (HF-format dir) or a random `model.preset`."""
  from r1jax.convert.hf import load_hf_model

  m = cfg.model
  if m.get("init_from"):
    _, model = load_hf_model(m.init_from, mesh=mesh, **model_overrides(cfg))
    return model
  overrides = model_overrides(cfg)
  if vocab_size is not None and "vocab_size" not in overrides:
    overrides["vocab_size"] = vocab_size
  mcfg = get_preset(m.preset, **overrides)
  return create_sharded_model(mcfg, mesh, seed=int(cfg.get("seed", 0)))


STAGE_META = "r1jax_stage.json"


def stage_meta(cfg) -> dict:
  """What later stages and the evaluator need to know about a stage's export (its prompt template)."""
  t = cfg.data.template
  return {"stage": cfg.get("stage", cfg.kind), "template": t.to_dict() if hasattr(t, "to_dict") else dict(t)}


def publish_final(workdir: str, write: Callable[[str], None], drain: Callable[[], None], *,
                  marker: str) -> str:
  """Writes <workdir>/final once, for any export. Process 0 runs `write(local_dir)` into a staged
  directory that then replaces final/ (a rename on local disks; on object stores an upload with
  `marker`, the file readers test for completeness, last); the others run `drain()`, their part in
  the per-tensor gathers of a model sharded across processes. All return after a barrier, once
  final/ exists."""
  out = fs.join(workdir, FINAL)
  if jax.process_index() != 0:
    drain()
  else:
    with fs.staged_dir(out, last=(marker,)) as tmp:
      write(tmp)
  sync("export written")
  return out


def export_final(model: nnx.Module, tokenizer_path: Optional[str], workdir: str, meta: Optional[dict] = None) -> str:
  """<workdir>/final: the HF layout (config.json written last), the tokenizer and the stage metadata."""
  from r1jax.convert.hf import drain_hf_tensors, save_hf_model
  from r1jax.data.tokenizer import copy_tokenizer_files

  def write(tmp: str) -> None:
    save_hf_model(model, tmp)
    if tokenizer_path:  # the stage's own tokenizer (HF files with their chat template, or sentencepiece)
      copy_tokenizer_files(tokenizer_path, tmp)
    if meta is not None:
      fs.write_json(os.path.join(tmp, STAGE_META), meta)

  return publish_final(workdir, write, lambda: drain_hf_tensors(model), marker="config.json")


def tokenizer_source(cfg) -> Optional[str]:
  path = cfg.tokenizer.get("path", "") if cfg.get("tokenizer") else ""
  return path or cfg.model.get("init_from") or None


def resolve_offline_corpus(data_cfg, workdir: str) -> None:
  """`data.corpus = "cold_start"` (any name of data.tasks.corpora) writes that synthetic corpus to
  <workdir>/data/<name>.jsonl once and points `data.spec.paths` at it (no download needed)."""
  name = data_cfg.get("corpus", "")
  if not name or data_cfg.spec.paths:
    return
  from r1jax.data.sources import write_jsonl
  from r1jax.data.tasks import corpora

  make = getattr(corpora, f"{name}_corpus", None)
  if make is None:
    raise ValueError(f"config.data.corpus: unknown corpus {name!r}")
  path = fs.join(workdir, "data", f"{name}.jsonl")
  if not fs.exists(path) and jax.process_index() == 0:
    kw = {"n": int(data_cfg.corpus_size)} if data_cfg.get("corpus_size") else {}
    kw.update(dict(data_cfg.get("corpus_options", None) or {}))
    unknown = sorted(set(kw) - set(inspect.signature(make).parameters))
    if unknown:
      raise ValueError(f"config.data.corpus_options: {name}_corpus has no option {unknown}; it takes "
                       f"{sorted(set(inspect.signature(make).parameters) - {'seed'})}")
    write_jsonl(make(seed=int(data_cfg.seed), **kw), path)  # whole or not at all
  sync("offline corpus written")
  with data_cfg.unlocked() if hasattr(data_cfg, "unlocked") else contextlib.nullcontext():
    data_cfg.spec.paths = (path,)

