"""Sampling and grading: k completions per prompt from the in-process sampler, scored by a reward
function and selected (`selection`), with counts and throughput that add up over shards.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from r1jax.train.rejection.filters import FilterConfig
from r1jax.train.rejection.selection import add_counts, count_keys, empty_counts, select_with_picks, summarize

# Sums `generate_and_select` keeps besides the selection counts (they add up over shards).
GENERATION_SUMS = ("skipped/overlong_prompt", "invalid_token_rows", "completion_tokens", "kept_completion_tokens", "finished",
                   "seconds/generate", "seconds/grade")


def scores_of(output: Any, n: int, component: str = "accuracy") -> np.ndarray:
  """[n] float scores from a reward output: a RewardOutput (`.scores`), a CombinedOutput (its
  `component`), or an array."""
  if hasattr(output, "components"):
    if component not in output.components:
      raise ValueError(f"reward output has no {component!r} component (has {sorted(output.components)})")
    scores = output.components[component]
  else:
    scores = getattr(output, "scores", output)
  scores = np.asarray(scores, np.float64).reshape(-1)
  if scores.shape != (n,):
    raise ValueError(f"reward returned {scores.shape[0]} scores for {n} completions")
  return scores


def response_text(tokenizer, tokens: Sequence[int], finish_reason: str, prefix: str = "") -> str:
  """The trainable response: `prefix` + the decoded completion without its EOS / turn-end stop
  token (SFT appends its own); control tokens are skipped, content tags kept. Ids past the
  tokenizer (a padded embedding table) have no text and are left out; `generate_and_select`
  never keeps such a completion."""
  ids = list(tokens)
  if finish_reason == "stop" and ids and ids[-1] in set(tokenizer.stop_ids):
    ids = ids[:-1]
  vocab = tokenizer.vocab_size
  return prefix + tokenizer.decode([i for i in ids if i < vocab], skip_special=True)


def _chunk_seed(seed: int, chunk: int) -> int:
  return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1)[0])


def generate_and_select(sampler, params, tokenizer, template, records: Sequence[Mapping[str, Any]],
                        reward_fn: Callable, *, k: int, keep_per_prompt: int, temperature: float = 0.6,
                        top_p: float = 0.95, top_k: int = 0, max_new_tokens: int = 1024,
                        stop_token_ids: Sequence[int] = (), seed: int = 0, batch_prompts: int = 64,
                        max_prompt_len: int = 4096, num_slots: Optional[int] = None, refill: bool = False,
                        filters: FilterConfig = FilterConfig(), correct_threshold: float = 0.5,
                        drop_truncated: bool = True, source: str = "rejection",
                        reward_component: str = "accuracy", progress: bool = False) -> tuple[list[dict], dict]:
  """Samples k completions per record with the in-process sampler, grades them with `reward_fn`
  (`(texts, answers, metadata) -> RewardOutput | CombinedOutput | [N]`; metadata = the record),
  applies `select_samples`, and returns (kept rows, stats).

  records: raw problems {prompt, answer, task?, language?, id?}; `template` turns a problem into
  the sampling prompt (an over-long prompt is skipped and counted, never truncated). Chunk c of
  `batch_prompts` records samples with a seed derived from (seed, c), so a run is reproducible.
  """
  from r1jax.data.encode import encode_prompt
  from r1jax.sampling import SamplingParams

  if k < 1:
    raise ValueError(f"generate_and_select: k must be >= 1, got {k}")
  if batch_prompts < 1:
    raise ValueError(f"generate_and_select: batch_prompts must be >= 1, got {batch_prompts}")
  prefix = template.generation_prefix
  vocab = tokenizer.vocab_size
  counts = empty_counts()
  extra = {key: 0 for key in GENERATION_SUMS}
  rows: list[dict] = []
  n_chunks = math.ceil(len(records) / batch_prompts)
  bar = None
  if progress:
    from r1jax.train.metrics import Progress

    bar = Progress(n_chunks, desc=source, keys=("acceptance_rate", "accuracy"))
  for c in range(n_chunks):
    chunk = []
    prompts = []
    for offset, rec in enumerate(records[c * batch_prompts:(c + 1) * batch_prompts]):
      enc = encode_prompt(rec, tokenizer, template, max_prompt_len)
      if "_drop" in enc:
        extra["skipped/overlong_prompt"] += 1
        continue
      chunk.append(rec if "id" in rec else {**rec, "id": c * batch_prompts + offset})
      prompts.append(enc["prompt_tokens"])
    if not chunk:
      continue
    sp = SamplingParams(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
                        max_new_tokens=int(max_new_tokens), stop_token_ids=tuple(stop_token_ids),
                        seed=_chunk_seed(seed, c), n=int(k))
    t0 = time.perf_counter()
    gen = sampler.generate(params, prompts, sp, num_slots=num_slots, refill=refill)
    t1 = time.perf_counter()
    completions = gen.completions()
    texts = [response_text(tokenizer, toks, why, prefix) for toks, why in zip(completions, gen.finish_reasons)]
    idx = np.asarray(gen.prompt_index)  # [N] record of each row (rows are prompt-major)
    out = reward_fn(texts, [chunk[i]["answer"] for i in idx], [chunk[i] for i in idx])
    scores = scores_of(out, len(texts), reward_component)
    # Ids past the tokenizer (padded embedding rows) have no text: the response would not be what
    # the model wrote, so it is never kept (counted as incorrect, and in `invalid_token_rows`).
    invalid = np.asarray([bool(toks) and max(toks) >= vocab for toks in completions], bool)
    scores = np.where(invalid, 0.0, scores)
    extra["invalid_token_rows"] += int(invalid.sum())
    t2 = time.perf_counter()
    per = [np.flatnonzero(idx == q) for q in range(len(chunk))]
    kept, st, picks = select_with_picks(chunk, [[texts[r] for r in rr] for rr in per], [scores[rr] for rr in per],
                                        keep_per_prompt=keep_per_prompt,
                                        finish_reasons=[[gen.finish_reasons[r] for r in rr] for rr in per],
                                        filters=filters, correct_threshold=correct_threshold,
                                        drop_truncated=drop_truncated, source=source)
    lengths = np.asarray(gen.lengths)  # [N]
    extra["kept_completion_tokens"] += int(sum(lengths[per[q][j]] for q, j in picks))
    rows.extend(kept)
    add_counts(counts, count_keys(st))
    extra["completion_tokens"] += int(lengths.sum())
    extra["finished"] += sum(r == "stop" for r in gen.finish_reasons)
    extra["seconds/generate"] += t1 - t0
    extra["seconds/grade"] += t2 - t1
    if bar is not None:
      bar.update(summarize(counts))
  if bar is not None:
    bar.close()
  return rows, generation_summary({**counts, **extra})


def generation_summary(sums: Mapping[str, float]) -> dict[str, float]:
  """Summed counts of one or more `generate_and_select` calls -> counts plus derived rates."""
  stats = summarize({k: sums.get(k, 0) for k in empty_counts()})
  stats.update({k: sums.get(k, 0) for k in GENERATION_SUMS})
  n, kept = stats["completions"], stats["kept"]
  stats["mean_completion_tokens"] = stats["completion_tokens"] / n if n else 0.0
  stats["mean_kept_completion_tokens"] = stats["kept_completion_tokens"] / kept if kept else 0.0
  stats["finished_rate"] = stats["finished"] / n if n else 0.0
  gen_s = stats["seconds/generate"]
  stats["tokens_per_s"] = stats["completion_tokens"] / gen_s if gen_s else 0.0
  return stats


def combine_stats(parts: Sequence[Mapping[str, float]]) -> dict[str, float]:
  """The stats of several `generate_and_select` calls (e.g. shards) as if they were one call."""
  sums: dict[str, float] = {}
  for part in parts:
    add_counts(sums, {k: part[k] for k in (*empty_counts(), *GENERATION_SUMS) if k in part})
  return generation_summary(sums)
