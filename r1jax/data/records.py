"""Dataset specs and record validation: raw rows -> canonical records, or a reason to skip them.

A `DatasetSpec` (from config) names the file(s), their format and which source field holds each
canonical field (prompt, answer, task, language, …). `canonicalize` checks one raw row against the
schema of the spec's `kind` and returns either a canonical record (a dict with canonical keys) or
a short reason string; the sources turn reasons into counted, logged skips with file:line.

Canonical fields by kind (required ones first; `task`, `language` and `id` are optional for all):
  rl, eval     prompt: str, answer: str | int | float | list | dict (no NaN / Infinity in it)
  sft          (prompt: str and response: str) or messages: list[{role, content}] or text: str;
               the response, the text and every assistant turn are non-blank (an empty one would
               train prompt -> EOS)
  preference   prompt: str, chosen: str, rejected: str
  pointwise    prompt: str, response: str, label: 0/1 (int, bool or 0.0/1.0)
Every string in a record (nested ones too) must encode as UTF-8: JSON's "\ud800" escape gives a
lone surrogate, which would otherwise pass here and crash the tokenizer half way through an epoch.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping

from r1jax.data import chat

KINDS = ("rl", "eval", "sft", "preference", "pointwise")
FORMATS = ("jsonl", "parquet", "arrayrecord")
OPTIONAL_STR_FIELDS = ("task", "language")
CANONICAL_FIELDS = ("prompt", "answer", "response", "messages", "text", "chosen", "rejected",
                    "label", "task", "language", "id")


class DataError(ValueError):
  """Bad input data; the message names the file and line (or record) at fault."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Where a dataset lives and how its fields map to r1jax's canonical names."""

  paths: tuple[str, ...]
  kind: str = "rl"
  format: str = "auto"                         # jsonl | parquet | arrayrecord | auto (by suffix)
  fields: Mapping[str, str] = dataclasses.field(default_factory=dict)   # canonical -> source
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {"task": "math"}
  max_skip_fraction: float = 0.01             # error once more than this fraction is bad
  max_logged_skips: int = 20                  # per file; the rest are counted, summarised

  def __post_init__(self):
    if isinstance(self.paths, (str, os.PathLike)):
      object.__setattr__(self, "paths", (os.fspath(self.paths),))
    object.__setattr__(self, "paths", tuple(os.fspath(p) for p in self.paths))
    if not self.paths:
      raise ValueError("data.spec.paths: no files given")
    if self.kind not in KINDS:
      raise ValueError(f"data.spec.kind: {self.kind!r} is not one of {KINDS}")
    if self.format != "auto" and self.format not in FORMATS:
      raise ValueError(f"data.spec.format: {self.format!r} is not one of {FORMATS} or 'auto'")
    for name in self.fields:
      if name not in CANONICAL_FIELDS:
        raise ValueError(f"data.spec.fields: {name!r} is not a canonical field {CANONICAL_FIELDS}")
    if not 0.0 <= self.max_skip_fraction <= 1.0:
      raise ValueError(f"data.spec.max_skip_fraction: {self.max_skip_fraction} not in [0, 1]")

  def source_field(self, canonical: str) -> str:
    return self.fields.get(canonical, canonical)

  def format_of(self, path: str) -> str:
    if self.format != "auto":
      return self.format
    lower = path.lower()
    if lower.endswith((".jsonl", ".json", ".jsonl.txt", ".ndjson")):
      return "jsonl"
    if lower.endswith((".parquet", ".pq")):
      return "parquet"
    if lower.endswith((".arrayrecord", ".array_record")) or ".array_record-" in lower:
      return "arrayrecord"
    raise ValueError(f"{path}: cannot tell the format from the name; set data.spec.format")


def spec_from_config(cfg: Any) -> DatasetSpec:
  """Builds a spec from a ConfigDict / mapping with keys of `DatasetSpec`."""
  get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
  paths = get("paths", None) or get("path", None)
  if paths is None:
    raise ValueError("data.spec.paths: missing")
  kw = {k: get(k) for k in ("kind", "format", "max_skip_fraction", "max_logged_skips")
        if get(k, None) is not None}
  fields, defaults = get("fields", None), get("defaults", None)
  return DatasetSpec(paths=tuple(paths) if not isinstance(paths, str) else (paths,),
                     fields=dict(fields or {}), defaults=dict(defaults or {}), **kw)


def _type_name(v: Any) -> str:
  return "null" if v is None else type(v).__name__


def _is_str(v: Any) -> bool:
  return isinstance(v, str)


def _is_answer(v: Any) -> bool:
  return (isinstance(v, (str, int, float, list, dict)) and not isinstance(v, bool)
          and not (isinstance(v, str) and not v.strip()))


def _non_finite(v: Any, where: str) -> str | None:
  """The location of the first NaN / Infinity in `v` (nested lists and objects too), or None."""
  if isinstance(v, float) and not math.isfinite(v):
    return where
  if isinstance(v, list):
    return next((w for i, x in enumerate(v) if (w := _non_finite(x, f"{where}[{i}]"))), None)
  if isinstance(v, dict):
    return next((w for k, x in v.items() if (w := _non_finite(x, f"{where}.{k}"))), None)
  return None


def _check_encodable(v: Any, where: str) -> None:
  """Raises _FieldError naming `where` (e.g. "messages[1].content") for a string, nested or a
  dict key, that cannot be encoded as UTF-8 (a lone surrogate)."""
  if isinstance(v, str):
    try:
      v.encode("utf-8")
    except UnicodeEncodeError as e:
      raise _FieldError(f"field {where!r}: not valid text, a lone surrogate "
                        f"U+{ord(v[e.start]):04X} at character {e.start} (cannot be encoded as "
                        f"UTF-8)") from None
  elif isinstance(v, list):
    for i, x in enumerate(v):
      _check_encodable(x, f"{where}[{i}]")
  elif isinstance(v, dict):
    for k, x in v.items():
      _check_encodable(k, f"{where} key")
      _check_encodable(x, f"{where}.{k}")


def _label(v: Any) -> int | None:
  if isinstance(v, bool):
    return int(v)
  if isinstance(v, (int, float)) and v in (0, 1):
    return int(v)
  return None


def _decode_bytes(v: Any) -> Any:
  """Binary columns (Parquet/ArrayRecord) must hold valid UTF-8; raises UnicodeDecodeError."""
  return v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else v


def canonicalize(raw: Any, spec: DatasetSpec) -> dict[str, Any] | str:
  """One raw row -> canonical record, or the reason it is unusable (a short string)."""
  if not isinstance(raw, Mapping):
    return f"expected a JSON object, got {_type_name(raw)}"

  def get(name: str) -> Any:
    key = spec.source_field(name)
    if key in raw:
      try:
        return _decode_bytes(raw[key])
      except UnicodeDecodeError as e:
        raise _FieldError(f"field {key!r}: invalid UTF-8 ({e.reason} at byte {e.start})") from e
    return spec.defaults.get(name)

  def need(name: str, check, what: str) -> Any:
    v = get(name)
    if v is None:
      raise _FieldError(f"missing field {spec.source_field(name)!r}")
    if not check(v):
      raise _FieldError(f"field {spec.source_field(name)!r}: expected {what}, got {_type_name(v)}")
    return v

  try:
    rec: dict[str, Any] = {}
    if spec.kind in ("rl", "eval"):
      rec["prompt"] = need("prompt", _is_str, "a string")
      rec["answer"] = need("answer", _is_answer, "a non-empty string, number, list or object")
      bad = _non_finite(rec["answer"], spec.source_field("answer"))
      if bad is not None:
        raise _FieldError(f"field {bad!r}: NaN / Infinity is not an answer")
    elif spec.kind == "sft":
      rec.update(_sft_fields(get, need, spec))
    elif spec.kind == "preference":
      for name in ("prompt", "chosen", "rejected"):
        rec[name] = need(name, _is_str, "a string")
    elif spec.kind == "pointwise":
      rec["prompt"] = need("prompt", _is_str, "a string")
      rec["response"] = need("response", _is_str, "a string")
      rec["label"] = _label(need("label", lambda v: _label(v) is not None, "0 or 1"))
    for name in OPTIONAL_STR_FIELDS:
      v = get(name)
      if v is not None:
        if not isinstance(v, str):
          raise _FieldError(
              f"field {spec.source_field(name)!r}: expected a string, got {_type_name(v)}")
        rec[name] = v
    v = get("id")
    if v is not None:
      if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise _FieldError(f"field {spec.source_field('id')!r}: expected a string or int, "
                          f"got {_type_name(v)}")
      rec["id"] = v
    for name, v in rec.items():
      _check_encodable(v, spec.source_field(name))
    return rec
  except _FieldError as e:
    return str(e)


class _FieldError(Exception):
  pass


def _sft_fields(get, need, spec: DatasetSpec) -> dict[str, Any]:
  messages = get("messages")
  if messages is not None:
    if not isinstance(messages, list):
      raise _FieldError(f"field {spec.source_field('messages')!r}: expected a list, "
                        f"got {_type_name(messages)}")
    try:
      chat.validate_messages(messages, where=spec.source_field("messages"))
    except ValueError as e:
      raise _FieldError(str(e)) from e
    if not any(m["role"] == "assistant" for m in messages):
      raise _FieldError(f"field {spec.source_field('messages')!r}: no assistant turn to train on")
    for i, m in enumerate(messages):
      if m["role"] == "assistant" and not m["content"].strip():
        raise _FieldError(f"field '{spec.source_field('messages')}[{i}].content': empty assistant "
                          f"turn (it would train the model to end its turn at once)")
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
  if get("response") is None and get("text") is not None:
    return {"text": _non_blank(need("text", _is_str, "a string"), spec.source_field("text"))}
  return {"prompt": need("prompt", _is_str, "a string"),
          "response": _non_blank(need("response", _is_str, "a string"), spec.source_field("response"))}


def _non_blank(v: str, key: str) -> str:
  if not v.strip():
    raise _FieldError(f"field {key!r}: empty (an SFT row would train prompt -> end of turn)")
  return v
