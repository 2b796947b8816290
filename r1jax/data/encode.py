"""Canonical records -> token-level examples (pure functions; the pipelines map them).

SFT example (1-D int32 arrays of one length n <= seq_len):
  tokens     the input ids (BOS, prompt, response, EOS / turn end; a tokenizer's own chat
             template writes its BOS itself, see `template_ids`)
  targets    tokens shifted left by one (the next token; 0 after the last one)
  loss_mask  1 where the *target* is a response token (the closing EOS / turn end included)
An example whose prompt alone fills `seq_len` has no trainable target left; it is marked with
`_drop` (a reason) for the counting filter instead of being trained on as pure padding.

RL / eval prompt example: `prompt_tokens` (list of ids), `answer`, `metadata`; over-long prompts
are marked `_drop = "overlong_prompt"`, counted downstream, never truncated (a cut question has a
different answer).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from r1jax.data.chat import Segment
from r1jax.data.templates import PromptTemplate
from r1jax.data.tokenizer import Tokenizer

METADATA_KEYS = ("id", "task", "language", "_loc")


def segments_to_ids(segments: Sequence[Segment], tokenizer: Tokenizer,
                    add_bos: bool = True) -> tuple[list[int], list[bool]]:
  """Tokenizes segment by segment; returns ids and, per id, whether it is a trainable token."""
  ids: list[int] = []
  trainable: list[bool] = []
  for seg in segments:
    seg_ids = tokenizer.encode(seg.text) if seg.text else []
    if seg.append_eos:
      seg_ids = seg_ids + [tokenizer.eos_id]
    ids += seg_ids
    trainable += [seg.trainable] * len(seg_ids)
  bos = tokenizer.bos_id
  if add_bos and bos is not None and (not ids or ids[0] != bos):
    ids.insert(0, bos)
    trainable.insert(0, False)
  return ids, trainable


def template_ids(segments: Sequence[Segment], tokenizer: Tokenizer,
                 template: PromptTemplate) -> tuple[list[int], list[bool]]:
  """`segments_to_ids` of a template's segments: BOS added unless the tokenizer's own chat
  template rendered them (it writes its BOS as text, or none, as transformers tokenizes it)."""
  return segments_to_ids(segments, tokenizer, add_bos=not template.writes_bos(tokenizer))


def sft_ids(record: Mapping[str, Any], tokenizer: Tokenizer,
            template: PromptTemplate) -> tuple[list[int], list[bool]]:
  """The ids of one SFT record (a conversation, plain text, or prompt + response) and, per id,
  whether it is trained on."""
  if "text" in record:  # pretraining text: every token is a target, whatever the template
    return segments_to_ids([Segment(record["text"], trainable=True, append_eos=True)], tokenizer)
  if "messages" in record:
    return template_ids(template.chat_segments(record["messages"], tokenizer), tokenizer, template)
  return template_ids(template.sft_segments(record["prompt"], record["response"], tokenizer), tokenizer,
                      template)


def encode_sft(record: Mapping[str, Any], tokenizer: Tokenizer, template: PromptTemplate,
               seq_len: int) -> dict[str, Any]:
  """One SFT record -> tokens / targets / loss_mask (+ `truncated`, or `_drop` if unusable)."""
  ids, trainable = sft_ids(record, tokenizer, template)
  n = len(ids)
  targets = ids[1:] + [0]
  mask = trainable[1:] + [False]
  # Cutting after computing the targets keeps the true next token at the last kept position.
  truncated = n > seq_len
  ids, targets, mask = ids[:seq_len], targets[:seq_len], mask[:seq_len]
  out: dict[str, Any] = {
      "tokens": np.asarray(ids, np.int32),        # [n]
      "targets": np.asarray(targets, np.int32),   # [n]
      "loss_mask": np.asarray(mask, np.int32),    # [n]
      "truncated": np.int32(truncated),
  }
  if not any(mask):
    out["_drop"] = "no_response_tokens"
    out["_loc"] = record.get("_loc", "?")
  return out


def metadata_of(record: Mapping[str, Any]) -> dict[str, Any]:
  meta = {k: record[k] for k in METADATA_KEYS if k in record}
  meta["prompt"] = record.get("prompt", "")
  return meta


def prompt_ids(problem: str, tokenizer: Tokenizer, template: PromptTemplate) -> list[int]:
  """The one prompt encoder: the ids a policy continues from (BOS, template, chat format).

  Every path that hands a policy a problem calls this (RL data, in-loop and stage evaluation,
  rejection sampling, the distillation teacher), and SFT / reward-model rows start with exactly
  these ids (`PromptTemplate.sft_segments` begins with `prompt_segments`), so a checkpoint is
  always measured on the prompts it was trained on.
  """
  ids, _ = template_ids(template.prompt_segments(problem, tokenizer), tokenizer, template)
  return ids


def encode_prompt(record: Mapping[str, Any], tokenizer: Tokenizer, template: PromptTemplate,
                  max_prompt_len: int) -> dict[str, Any]:
  """One RL / eval record -> prompt ids + answer + metadata (marked `_drop` if over-long)."""
  ids = prompt_ids(record["prompt"], tokenizer, template)
  out = {"prompt_tokens": ids, "answer": record["answer"], "metadata": metadata_of(record)}
  if len(ids) > max_prompt_len:
    out["_drop"] = "overlong_prompt"
    out["_loc"] = record.get("_loc", "?")
  return out


def encode_scored(prompt: str, response: str, tokenizer: Tokenizer,
                  template: PromptTemplate) -> list[int]:
  """Prompt + response + EOS, as a reward model reads it (the score sits on the last token)."""
  ids, _ = template_ids(template.sft_segments(prompt, response, tokenizer), tokenizer, template)
  return ids


def encode_preference(record: Mapping[str, Any], tokenizer: Tokenizer, template: PromptTemplate,
                      max_len: int) -> dict[str, Any]:
  chosen = encode_scored(record["prompt"], record["chosen"], tokenizer, template)
  rejected = encode_scored(record["prompt"], record["rejected"], tokenizer, template)
  out = {"chosen": chosen, "rejected": rejected, "metadata": metadata_of(record)}
  if max(len(chosen), len(rejected)) > max_len:
    out["_drop"] = "overlong_pair"
    out["_loc"] = record.get("_loc", "?")
  return out


def encode_pointwise(record: Mapping[str, Any], tokenizer: Tokenizer, template: PromptTemplate,
                     max_len: int) -> dict[str, Any]:
  ids = encode_scored(record["prompt"], record["response"], tokenizer, template)
  out = {"tokens": ids, "label": int(record["label"]), "metadata": metadata_of(record)}
  if len(ids) > max_len:
    out["_drop"] = "overlong_example"
    out["_loc"] = record.get("_loc", "?")
  return out


def pad_rows(rows: Sequence[Sequence[int]], length: int,
             pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads id lists to [B, length]; returns (ids, lengths)."""
  out = np.full((len(rows), length), pad_id, np.int32)
  lengths = np.zeros((len(rows),), np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
    lengths[i] = len(r)
  return out, lengths
