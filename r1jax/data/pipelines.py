"""Grain pipelines, one per use: SFT (packed), RL prompts, preference pairs, pointwise, eval.

Every training pipeline has the same spine:

    MapDataset.source(records) -> shuffle(seed) -> repeat(epochs) -> [process_index::process_count]
      -> to_iter_dataset -> map(tokenize) -> counting filter -> pack / batch

- Shuffling happens before repeat, so each epoch has its own order (Grain reseeds per epoch), and
  before the per-process slice, so all processes agree on one permutation and their shards are
  disjoint and together cover it.
- `process_index` / `process_count` default to `jax.process_index()` / `jax.process_count()`;
  tests pass them explicitly to simulate several hosts in one process.
- `batch_size` is the *per-process* batch; `local_batch_size(global, process_count)` converts.
- The returned `grain.IterDataset` yields numpy batches; `iter(ds)` is a checkpointable
  `grain.DatasetIterator` (`get_state` / `set_state`, or `grain.checkpoint.CheckpointSave/Restore`
  inside an orbax `CheckpointManager`). `global_batch.to_global` makes the numeric parts global.

Batches:
  SFT         tokens, targets, loss_mask, segment_ids, positions: int32 [B, L];
              num_truncated, dropped_total: int32 [B]
  RL / eval   prompt_tokens: list of B id lists, prompt_lengths: int32 [B], answers: list,
              metadata: list of dicts (id, task, language, prompt, _loc; eval adds
              question_index, sample_index), dropped_total: int  (over-long prompts so far)
  preference  chosen_tokens, rejected_tokens: int32 [B, L]; chosen_lengths, rejected_lengths [B]
  pointwise   tokens: int32 [B, L], lengths: int32 [B], labels: int32 [B]
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import grain
import numpy as np

from r1jax.data import encode, transforms
from r1jax.data.templates import PromptTemplate
from r1jax.data.tokenizer import Tokenizer


def process_shard(process_index: int | None = None,
                  process_count: int | None = None) -> tuple[int, int]:
  """(index, count) of this process, defaulting to JAX's; validated."""
  if process_index is None or process_count is None:
    import jax

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, process_count={process_count})")
  return int(process_index), int(process_count)


def local_batch_size(global_batch_size: int, process_count: int | None = None) -> int:
  if process_count is None:
    import jax

    process_count = jax.process_count()
  count = int(process_count)
  if global_batch_size % count:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                     f"{count} processes")
  return global_batch_size // count


def record_dataset(source: Any, *, seed: int = 0, shuffle: bool = True,
                   num_epochs: int | None = None, process_index: int | None = None,
                   process_count: int | None = None) -> grain.MapDataset:
  """Records of this process's shard: shuffle(seed) -> repeat -> slice [index::count]."""
  index, count = process_shard(process_index, process_count)
  if len(source) < count:
    raise ValueError(f"{len(source)} records cannot be shared by {count} processes")
  ds = grain.MapDataset.source(source)
  if shuffle:
    ds = transforms.EpochShuffleMapDataset(ds, seed=seed)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  return ds[index::count]


def _iter(ds: grain.MapDataset, read_threads: int) -> grain.IterDataset:
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                              prefetch_buffer_size=max(16, 8 * read_threads)))


def sft_dataset(source: Any, tokenizer: Tokenizer, template: PromptTemplate, *, batch_size: int,
                seq_len: int, seed: int = 0, num_epochs: int | None = None, pack: bool = True,
                num_packing_bins: int | None = None, shuffle: bool = True,
                process_index: int | None = None, process_count: int | None = None,
                read_threads: int = 2) -> grain.IterDataset:
  """SFT batches: loss on response tokens only; several examples packed per row when `pack`."""
  ds = record_dataset(source, seed=seed, shuffle=shuffle, num_epochs=num_epochs,
                      process_index=process_index, process_count=process_count)
  it = _iter(ds, read_threads).map(functools.partial(
      encode.encode_sft, tokenizer=tokenizer, template=template, seq_len=seq_len))
  it = transforms.CountingFilterIterDataset(it, what="SFT example")
  if pack:
    it = transforms.pack_sft(it, seq_len, num_packing_bins or batch_size, tokenizer.pad_id)
  else:
    it = it.map(functools.partial(transforms.pad_sft, seq_len=seq_len, pad_id=tokenizer.pad_id))
  return it.batch(batch_size, drop_remainder=True)


def _collate_prompts(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
  return {
      "prompt_tokens": [list(x["prompt_tokens"]) for x in items],
      "prompt_lengths": np.asarray([len(x["prompt_tokens"]) for x in items], np.int32),
      "answers": [x["answer"] for x in items],
      "metadata": [x["metadata"] for x in items],
      "dropped_total": int(max(int(x["dropped_total"]) for x in items)),
  }


def rl_prompt_dataset(source: Any, tokenizer: Tokenizer, template: PromptTemplate, *,
                      batch_size: int, max_prompt_len: int, seed: int = 0,
                      num_epochs: int | None = None, shuffle: bool = True,
                      process_index: int | None = None, process_count: int | None = None,
                      read_threads: int = 2) -> grain.IterDataset:
  """Batches of prompts (one row per question; the G-fold repetition happens downstream).

  Prompts longer than `max_prompt_len` tokens are dropped, logged with file:line and counted
  (`dropped_total` in every batch, by reason in the iterator state).
  """
  ds = record_dataset(source, seed=seed, shuffle=shuffle, num_epochs=num_epochs,
                      process_index=process_index, process_count=process_count)
  it = _iter(ds, read_threads).map(functools.partial(
      encode.encode_prompt, tokenizer=tokenizer, template=template, max_prompt_len=max_prompt_len))
  it = transforms.CountingFilterIterDataset(it, what="RL prompt")
  return it.batch(batch_size, drop_remainder=True, batch_fn=_collate_prompts)


def eval_dataset(source: Any, tokenizer: Tokenizer, template: PromptTemplate, *, k: int,
                 batch_size: int, max_prompt_len: int, process_index: int | None = None,
                 process_count: int | None = None) -> grain.IterDataset:
  """One pass over this process's questions, each repeated k times (k samples for pass@k).

  Rows keep the source order; `metadata[i]` has `question_index` (global) and `sample_index`.
  The last batch may be smaller. The k copies of a question stay on one process.
  """
  if k < 1:
    raise ValueError(f"eval k must be >= 1, got {k}")
  index, count = process_shard(process_index, process_count)
  questions = grain.MapDataset.source(source)[index::count]
  n = len(questions)

  def expand(j: int) -> dict[str, Any]:
    rec = dict(questions[j // k])
    rec["_sample"] = (index + count * (j // k), j % k)
    return rec

  def encode_eval(rec: dict[str, Any]) -> dict[str, Any]:
    out = encode.encode_prompt(rec, tokenizer, template, max_prompt_len)
    q, s = rec["_sample"]
    out["metadata"].update(question_index=q, sample_index=s)
    return out

  ds = grain.MapDataset.range(n * k).map(expand)
  it = _iter(ds, 0).map(encode_eval)
  it = transforms.CountingFilterIterDataset(it, what="eval prompt")
  return it.batch(batch_size, drop_remainder=False, batch_fn=_collate_prompts)


def _encoded_batches(source: Any, encode_fn: Callable, collate: Callable, what: str, *, batch_size: int,
                     seed: int, num_epochs: int | None, shuffle: bool, process_index: int | None,
                     process_count: int | None, read_threads: int) -> grain.IterDataset:
  """Records -> encode_fn (None = dropped and counted as `what`) -> collated batches."""
  ds = record_dataset(source, seed=seed, shuffle=shuffle, num_epochs=num_epochs,
                      process_index=process_index, process_count=process_count)
  it = transforms.CountingFilterIterDataset(_iter(ds, read_threads).map(encode_fn), what=what)
  return it.batch(batch_size, drop_remainder=True, batch_fn=collate)


def _collate_pairs(items: Sequence[dict[str, Any]], max_len: int, pad_id: int) -> dict[str, Any]:
  chosen, chosen_len = encode.pad_rows([x["chosen"] for x in items], max_len, pad_id)
  rejected, rejected_len = encode.pad_rows([x["rejected"] for x in items], max_len, pad_id)
  return {"chosen_tokens": chosen, "chosen_lengths": chosen_len,
          "rejected_tokens": rejected, "rejected_lengths": rejected_len,
          "metadata": [x["metadata"] for x in items],
          "dropped_total": int(max(int(x["dropped_total"]) for x in items))}


def preference_dataset(source: Any, tokenizer: Tokenizer, template: PromptTemplate, *,
                       batch_size: int, max_len: int, seed: int = 0,
                       num_epochs: int | None = None, shuffle: bool = True,
                       process_index: int | None = None, process_count: int | None = None,
                       read_threads: int = 2) -> grain.IterDataset:
  """(prompt, chosen, rejected) -> padded token rows for a pairwise reward model."""
  return _encoded_batches(
      source, functools.partial(encode.encode_preference, tokenizer=tokenizer, template=template, max_len=max_len),
      functools.partial(_collate_pairs, max_len=max_len, pad_id=tokenizer.pad_id), "preference pair",
      batch_size=batch_size, seed=seed, num_epochs=num_epochs, shuffle=shuffle, process_index=process_index,
      process_count=process_count, read_threads=read_threads)


def _collate_pointwise(items: Sequence[dict[str, Any]], max_len: int,
                       pad_id: int) -> dict[str, Any]:
  tokens, lengths = encode.pad_rows([x["tokens"] for x in items], max_len, pad_id)
  return {"tokens": tokens, "lengths": lengths,
          "labels": np.asarray([x["label"] for x in items], np.int32),
          "metadata": [x["metadata"] for x in items],
          "dropped_total": int(max(int(x["dropped_total"]) for x in items))}


def pointwise_dataset(source: Any, tokenizer: Tokenizer, template: PromptTemplate, *,
                      batch_size: int, max_len: int, seed: int = 0,
                      num_epochs: int | None = None, shuffle: bool = True,
                      process_index: int | None = None, process_count: int | None = None,
                      read_threads: int = 2) -> grain.IterDataset:
  """(prompt, response, label) -> padded rows for a pointwise (safety) reward model."""
  return _encoded_batches(
      source, functools.partial(encode.encode_pointwise, tokenizer=tokenizer, template=template, max_len=max_len),
      functools.partial(_collate_pointwise, max_len=max_len, pad_id=tokenizer.pad_id), "pointwise example",
      batch_size=batch_size, seed=seed, num_epochs=num_epochs, shuffle=shuffle, process_index=process_index,
      process_count=process_count, read_threads=read_threads)


_BUILDERS: dict[str, Callable[..., grain.IterDataset]] = {
    "sft": sft_dataset, "rl": rl_prompt_dataset, "eval": eval_dataset,
    "preference": preference_dataset, "pointwise": pointwise_dataset}


def build_dataset(kind: str, source: Any, tokenizer: Tokenizer, template: PromptTemplate,
                  **options: Any) -> grain.IterDataset:
  """Dispatch by kind ('sft', 'rl', 'eval', 'preference', 'pointwise'); options as above."""
  if kind not in _BUILDERS:
    raise KeyError(f"data.kind: unknown pipeline {kind!r}; known: {sorted(_BUILDERS)}")
  return _BUILDERS[kind](source, tokenizer, template, **options)
