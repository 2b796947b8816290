"""Learned rewards (paper §2.3.4): a helpfulness RM on the summary, a safety RM on the whole response.

What each reward model reads (the same functions select the text in training and at reward time):

  helpfulness  `summary_text`: the part after the last `</think>` (the summary for the user); a
               response without any think tag is all summary; an unterminated `<think>` has no
               summary. Scored as the raw Bradley–Terry score (or its sigmoid with `squash=True`).
  safety       `full_response_text`: the whole response, reasoning and summary. Scored as the
               sigmoid probability that the response is safe.

Both rewards render `metadata[i]["prompt"]` (the raw problem) and the selected text with the
reward model's own `PromptTemplate` (`encode.encode_scored`, as the training pipelines do),
batch rows sorted by length, pad them to power-of-two buckets (rows: `min_batch_bucket` up to
`batch_size`; tokens: `min_len_bucket` up to `max_len`) and run one jitted scoring program per
bucket, shared by every scorer of the same architecture. A completion that is not text, is empty, is over `max_chars`, or has no summary
scores 0 and is counted (`invalid`); token rows longer than `max_len` keep their last `max_len`
tokens (the head reads the end) and are counted (`truncated`). Nothing raises into the trainer.

A reward model directory (`save_reward_model` / `load_reward_model`) holds the backbone in HF
layout (config.json + safetensors, via `convert.hf`), the head in `reward_head.npz`, the
tokenizer, and `reward_model.json` (kind, template, max_len).
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from r1jax import fs
from r1jax.data import encode
from r1jax.data.templates import PromptTemplate, build_template
from r1jax.data.tokenizer import (SentencePieceTokenizer, Tokenizer, copy_tokenizer_files, has_tokenizer,
                                  load_tokenizer)
from r1jax.models.reward_head import RewardModel, make_score_fn, split_reward_model
from r1jax.rewards import extract
from r1jax.rewards.registry import RewardOutput, register

log = logging.getLogger(__name__)

RM_KINDS = ("helpfulness", "safety")
DEFAULT_TEMPLATE = PromptTemplate(name="chat", chat_format="plain")
META_FILE, HEAD_FILE = "reward_model.json", "reward_head.npz"
FORMAT_VERSION = 1


# ------------------------------------------------------------------ what text is scored


def summary_text(completion: Any) -> Optional[str]:
  """The summary: text after the last `</think>`; all of it without think tags; None if none."""
  text = extract.as_text(completion)
  end = text.rfind(extract.THINK_CLOSE)
  if end >= 0:
    summary = text[end + len(extract.THINK_CLOSE):]
  elif extract.THINK_OPEN in text:
    return None  # reasoning never closed: the model was cut off before its summary
  else:
    summary = text
  summary = summary.strip()
  return summary or None


def full_response_text(completion: Any) -> Optional[str]:
  """The whole response (reasoning + summary); None if it is not text or is blank."""
  text = extract.as_text(completion)
  return text if text.strip() else None


TEXT_SELECTORS: dict[str, Callable[[Any], Optional[str]]] = {
    "helpfulness": summary_text, "safety": full_response_text}


def select_text(kind: str, completion: Any) -> Optional[str]:
  """The text the `kind` reward model scores, or None when there is none to score."""
  if kind not in TEXT_SELECTORS:
    raise ValueError(f"reward model kind {kind!r} is not one of {RM_KINDS}")
  return TEXT_SELECTORS[kind](completion)


# ------------------------------------------------------------------ tokens


def round_up_pow2(n: int, minimum: int, cap: int) -> int:
  """Smallest power of two >= max(n, minimum), capped at `cap`."""
  n = max(int(n), int(minimum), 1)
  return min(1 << (n - 1).bit_length(), int(cap))


def scored_ids(prompt: str, response: str, tokenizer: Tokenizer, template: PromptTemplate,
               max_len: int) -> tuple[list[int], bool]:
  """Prompt + response ids as the reward model reads them; over-long rows keep their tail."""
  ids = encode.encode_scored(prompt, response, tokenizer, template)
  if len(ids) > max_len:
    return ids[-max_len:], True
  return ids, False


class RewardModelScorer:
  """The batch reward function (`RewardFn`) of one reward model; see the module docstring."""

  on_devices = True  # a forward pass on the mesh: every process scores every row (combine.py)

  def __init__(self, kind: str, model: RewardModel, tokenizer: Tokenizer,
               template: Optional[PromptTemplate] = None, *, max_len: int = 1024,
               batch_size: int = 32, squash: Optional[bool] = None, min_len_bucket: int = 32,
               min_batch_bucket: int = 1, max_chars: int = extract.DEFAULT_MAX_CHARS):
    if kind not in RM_KINDS:
      raise ValueError(f"reward model kind {kind!r} is not one of {RM_KINDS}")
    if not isinstance(model, RewardModel):
      raise TypeError(f"{kind}_rm: model must be a RewardModel, got {type(model).__name__}")
    if not isinstance(tokenizer, Tokenizer):
      raise TypeError(f"{kind}_rm: tokenizer must be an r1jax Tokenizer, got {type(tokenizer).__name__}")
    if max_len < 2 or batch_size < 1:
      raise ValueError(f"{kind}_rm: max_len must be >= 2 and batch_size >= 1, got {max_len}, {batch_size}")
    if kind == "safety" and squash is False:
      raise ValueError("safety_rm: the safety score is always a probability (squash cannot be False)")
    self.kind, self.tokenizer = kind, tokenizer
    self.template = template or DEFAULT_TEMPLATE
    self.max_len, self.batch_size = int(max_len), int(batch_size)
    self.min_len_bucket, self.max_chars = int(min_len_bucket), int(max_chars)
    self.min_batch_bucket = int(min_batch_bucket)
    self.squash = kind == "safety" or bool(squash)
    graphdef, self.params, self.extra = split_reward_model(model)
    self._score = make_score_fn(graphdef)

  def token_rows(self, completions: Sequence[Any],
                 metadata: Optional[Sequence[Mapping[str, Any]]]) -> tuple[list, dict[str, int]]:
    """Per completion its id list (None when invalid), and counts of invalid / truncated rows."""
    rows: list[Optional[list[int]]] = []
    counts = {"invalid": 0, "truncated": 0, "missing_prompt": 0}
    for i, completion in enumerate(completions):
      meta = metadata[i] if metadata is not None and i < len(metadata) else None
      prompt = meta.get("prompt") if isinstance(meta, Mapping) else None
      if not isinstance(prompt, str):
        counts["missing_prompt"] += 1
        prompt = ""
      text = extract.as_text(completion)
      selected = select_text(self.kind, text) if len(text) <= self.max_chars else None
      ids = None
      if selected is not None:
        try:
          ids, cut = scored_ids(prompt, selected, self.tokenizer, self.template, self.max_len)
          counts["truncated"] += int(cut)
        except Exception:  # noqa: BLE001 — a tokenizer failure on one row scores that row 0
          log.warning("%s_rm: could not tokenize row %d; scoring it 0", self.kind, i, exc_info=True)
      counts["invalid"] += ids is None
      rows.append(ids)
    return rows, counts

  def raw_scores(self, rows: Sequence[Optional[Sequence[int]]]) -> np.ndarray:
    """Raw head outputs [N] for id rows (None rows give 0), in length-sorted bucketed batches."""
    raw = np.zeros(len(rows), np.float32)
    valid = sorted((i for i, r in enumerate(rows) if r), key=lambda i: len(rows[i]))
    pad = self.tokenizer.pad_id
    for start in range(0, len(valid), self.batch_size):
      chunk = valid[start:start + self.batch_size]
      n_rows = round_up_pow2(len(chunk), self.min_batch_bucket, self.batch_size)
      length = round_up_pow2(max(len(rows[i]) for i in chunk), self.min_len_bucket, self.max_len)
      tokens, lengths = encode.pad_rows([rows[i] for i in chunk], length, pad)
      tokens = np.concatenate([tokens, np.full((n_rows - len(chunk), length), pad, np.int32)])
      lengths = np.concatenate([lengths, np.zeros(n_rows - len(chunk), np.int32)])
      out = np.asarray(self._score(self.params, self.extra, tokens, lengths), np.float32)
      raw[chunk] = out[:len(chunk)]
    return raw

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any] = (),
               metadata: Optional[Sequence[Mapping[str, Any]]] = None) -> RewardOutput:
    n = len(completions)
    try:
      rows, counts = self.token_rows(completions, metadata)
      raw = self.raw_scores(rows)
    except Exception:  # noqa: BLE001 — the trainer must keep going
      log.warning("%s_rm failed on a batch of %d; its scores are 0", self.kind, n, exc_info=True)
      return RewardOutput(np.zeros(n, np.float32), {"mean": 0.0, "raw_mean": 0.0, "failed": 1.0,
                                                    "nonfinite": 0.0, "invalid": float(n),
                                                    "truncated": 0.0, "missing_prompt": 0.0})
    ok = np.asarray([bool(r) for r in rows], bool)
    finite = np.isfinite(raw)
    raw = np.where(finite, raw, 0.0).astype(np.float32)
    scores = np.exp(-np.logaddexp(0.0, -raw)) if self.squash else raw  # sigmoid, no overflow
    scores = np.where(ok, scores, 0.0).astype(np.float32)
    metrics = {"mean": float(scores.mean()) if n else 0.0,
               "raw_mean": float(raw[ok].mean()) if ok.any() else 0.0, "failed": 0.0,
               "nonfinite": float((~finite & ok).sum()), **{k: float(v) for k, v in counts.items()}}
    return RewardOutput(scores, metrics)


# ------------------------------------------------------------------ save / load


class LoadedRewardModel(NamedTuple):
  model: RewardModel
  tokenizer: Tokenizer
  kind: str
  template: PromptTemplate
  max_len: Optional[int]


def template_to_dict(template: PromptTemplate) -> dict[str, Any]:
  d = dataclasses.asdict(template)
  d["shots"] = [{"prompt": p, "response": r} for p, r in template.shots]
  return d


def save_reward_model(model: RewardModel, directory: str, *, kind: str,
                      tokenizer: Tokenizer | str | None = None,
                      template: Optional[PromptTemplate] = None,
                      max_len: Optional[int] = None) -> str:
  """Writes the backbone (HF layout), the head, the tokenizer and reward_model.json.

  `tokenizer`: a SentencePieceTokenizer (saved as tokenizer.model), or the path of a tokenizer
  file / directory (copied); None leaves it out (then `load_reward_model` needs one given).
  A bucket path (gs://…) is written locally first and uploaded with reward_model.json last.
  """
  from r1jax.convert.hf import save_hf_model

  if kind not in RM_KINDS:
    raise ValueError(f"reward model kind {kind!r} is not one of {RM_KINDS}")
  if fs.is_remote(directory):
    with fs.staged_dir(directory, last=(META_FILE,)) as local:
      save_reward_model(model, local, kind=kind, tokenizer=tokenizer, template=template, max_len=max_len)
    return directory
  save_hf_model(model.backbone, directory)
  from r1jax.parallel.multihost import host_get

  np.savez(os.path.join(directory, HEAD_FILE), weight=np.asarray(host_get(model.score_head[...]), np.float32),
           bias=np.asarray(host_get(model.score_bias[...]), np.float32))
  if isinstance(tokenizer, SentencePieceTokenizer):
    tokenizer.save(os.path.join(directory, "tokenizer.model"))
  elif isinstance(tokenizer, (str, os.PathLike)):
    copy_tokenizer_files(tokenizer, directory)
  elif tokenizer is not None:
    raise TypeError(f"save_reward_model: pass a SentencePieceTokenizer or a tokenizer path, got "
                    f"{type(tokenizer).__name__}")
  meta = {"format_version": FORMAT_VERSION, "kind": kind,
          "template": template_to_dict(template or DEFAULT_TEMPLATE), "max_len": max_len}
  with open(os.path.join(directory, META_FILE), "w") as f:
    json.dump(meta, f, indent=2)
  return directory


def load_reward_model(directory: str, *, tokenizer: Tokenizer | str | None = None,
                      mesh=None, dtype: Optional[str] = None) -> LoadedRewardModel:
  """Reads a directory written by `save_reward_model` (tokenizer: override the saved one)."""
  from r1jax.convert.hf import load_hf_model

  meta_path = fs.join(directory, META_FILE)
  if not fs.exists(meta_path):
    raise FileNotFoundError(f"{directory}: no {META_FILE} (not a reward model directory)")
  meta = fs.read_json(meta_path)
  if meta.get("kind") not in RM_KINDS:
    raise ValueError(f"{meta_path}: kind {meta.get('kind')!r} is not one of {RM_KINDS}")
  head_path = fs.join(directory, HEAD_FILE)
  if not fs.exists(head_path):
    raise FileNotFoundError(f"{directory}: no {HEAD_FILE} (the reward head)")
  with np.load(io.BytesIO(fs.read_bytes(head_path))) as head:
    weight, bias = head["weight"], head["bias"]
  _, backbone = load_hf_model(directory, mesh=mesh, dtype=dtype)
  model = RewardModel.from_backbone(backbone, weight, bias)
  if tokenizer is None:
    if not has_tokenizer(directory):
      raise FileNotFoundError(f"{directory}: no tokenizer saved; pass tokenizer=")
    tokenizer = load_tokenizer(directory)
  elif isinstance(tokenizer, (str, os.PathLike)):
    tokenizer = load_tokenizer(tokenizer)
  max_len = meta.get("max_len")
  return LoadedRewardModel(model, tokenizer, meta["kind"], build_template(meta.get("template")),
                           int(max_len) if max_len else None)


# ------------------------------------------------------------------ registered rewards


def _build(kind: str, model: Optional[RewardModel], tokenizer: Tokenizer | str | None,
           path: Optional[str], template: Optional[PromptTemplate], max_len: Optional[int],
           **options: Any) -> RewardModelScorer:
  name = f"{kind}_rm"
  if (model is None) == (path is None):
    raise TypeError(f"{name}: give exactly one of model= (with tokenizer=) or path=")
  if path is not None:
    loaded = load_reward_model(path, tokenizer=tokenizer)
    if loaded.kind != kind:
      raise ValueError(f"{name}: {path} holds a {loaded.kind!r} reward model, not {kind!r}")
    model, tokenizer = loaded.model, loaded.tokenizer
    template = template or loaded.template
    max_len = max_len or loaded.max_len
  elif tokenizer is None:
    raise TypeError(f"{name}: model= needs tokenizer=")
  elif isinstance(tokenizer, (str, os.PathLike)):
    tokenizer = load_tokenizer(tokenizer)
  return RewardModelScorer(kind, model, tokenizer, template, max_len=max_len or 1024, **options)


@register("helpfulness_rm")
def helpfulness_rm(*, model: Optional[RewardModel] = None, tokenizer: Tokenizer | str | None = None,
                   path: Optional[str] = None, template: Optional[PromptTemplate] = None,
                   max_len: Optional[int] = None, batch_size: int = 32, squash: bool = False,
                   min_len_bucket: int = 32, min_batch_bucket: int = 1) -> RewardModelScorer:
  """Pairwise helpfulness RM on the summary: raw Bradley–Terry score (sigmoid with squash)."""
  return _build("helpfulness", model, tokenizer, path, template, max_len, batch_size=batch_size,
                squash=squash, min_len_bucket=min_len_bucket, min_batch_bucket=min_batch_bucket)


@register("safety_rm")
def safety_rm(*, model: Optional[RewardModel] = None, tokenizer: Tokenizer | str | None = None,
              path: Optional[str] = None, template: Optional[PromptTemplate] = None,
              max_len: Optional[int] = None, batch_size: int = 32, min_len_bucket: int = 32,
              min_batch_bucket: int = 1) -> RewardModelScorer:
  """Pointwise safety RM on the whole response: probability that the response is safe."""
  return _build("safety", model, tokenizer, path, template, max_len, batch_size=batch_size,
                min_len_bucket=min_len_bucket, min_batch_bucket=min_batch_bucket)
