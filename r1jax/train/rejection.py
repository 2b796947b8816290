"""Rejection sampling (R1 paper §2.3.3) and teacher data for distillation, as a library.

From a policy (the reasoning-RL checkpoint, or a distillation teacher), sample k completions per
prompt, keep only the correct and readable ones, and turn them into SFT records:

    rows, stats = generate_and_select(sampler, params, tok, template, records, reward_fn, k=4, ...)
    mixed = mix_with_non_reasoning(rows, instruction_rows, ratio=3.0, seed=0)
    write_dataset(mixed, "data/rejection_sft.jsonl")

A completion is kept when (in this order; the first failing check is its drop reason):
1. it is correct: its accuracy score is >= `correct_threshold` (0.5; the rule verifiers give 0/1;
   a completion with ids past the tokenizer's vocabulary has no faithful text and scores 0);
2. it finished (`finish_reason == "stop"`): a completion cut at the token limit is not a complete
   response to imitate, even if an answer block happens to be closed;
3. its chain of thought passes the readability filters (`filter_reasons`, below);
4. it differs from the completions already kept for its prompt (whitespace-normalised), and
5. fewer than `keep_per_prompt` completions of its prompt were kept before it (sample order;
   samples are i.i.d., so "the first ones" is a random choice).

Readability filters (paper: "we filter out chain-of-thought with mixed languages, long paragraphs,
and code blocks"). The chain of thought is the `<think>…</think>` block of the response:
- `no_think`: the response has no complete think block (with `require_think`): there is no CoT to
  check, and SFT on it would teach the model to skip the R1 format.
- `mixed_language`: the language-consistency reward (rewards/language.py: share of CoT words in
  the target language's script) is below `min_language_consistency`. A CoT with no words at all
  (only math) is consistent. The target language is the record's `language`, else the filter's.
- `long_paragraph`: some paragraph is longer than `max_paragraph_chars` characters. A paragraph
  is a maximal run of text without a line break: R1-format reasoning writes a step per line, and
  a wall of text with no break is what hurts readability. 0 disables the check.
- `code_block`: the CoT contains a Markdown code fence (```), unless `allow_code_blocks`.

Output records (kind "sft"): {prompt, response, answer, task, language, source, id}, where
`prompt` is the raw problem (the SFT pipeline applies the template) and `response` is the
template's `generation_prefix` + the completion text (EOS / turn-end stop token removed; an
`</answer>` stop is content and stays): the R1 format, reasoning + summary with `<answer>`.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import re
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from r1jax.rewards import extract
from r1jax.rewards.language import LANGUAGE_SCRIPTS, language_consistency

log = logging.getLogger(__name__)

NO_THINK, MIXED_LANGUAGE, LONG_PARAGRAPH, CODE_BLOCK = "no_think", "mixed_language", "long_paragraph", "code_block"
FILTER_REASONS = (NO_THINK, MIXED_LANGUAGE, LONG_PARAGRAPH, CODE_BLOCK)
# Mutually exclusive reasons a completion is not kept (see the module docstring for the order).
DROP_REASONS = ("incorrect", "truncated", "filtered", "duplicate", "over_keep_limit")
FORMATS = ("jsonl", "arrayrecord")
CODE_FENCE = "```"
# Sums `generate_and_select` keeps besides the selection counts (they add up over shards).
GENERATION_SUMS = ("skipped/overlong_prompt", "invalid_token_rows", "completion_tokens", "kept_completion_tokens", "finished",
                   "seconds/generate", "seconds/grade")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


# ------------------------------------------------------------------------------------ filters


@dataclasses.dataclass(frozen=True)
class FilterConfig:
  """Readability filters on the chain of thought (module docstring). `language` is the default
  target for records without a `language` field."""

  language: str = "en"
  min_language_consistency: float = 0.95  # 0 disables
  max_paragraph_chars: int = 2000  # 0 disables
  allow_code_blocks: bool = False
  require_think: bool = True

  def __post_init__(self):
    normalize_language(self.language, where="FilterConfig.language")
    if not 0.0 <= self.min_language_consistency <= 1.0:
      raise ValueError(f"FilterConfig.min_language_consistency: must be in [0, 1], got "
                       f"{self.min_language_consistency}")
    if self.max_paragraph_chars < 0:
      raise ValueError(f"FilterConfig.max_paragraph_chars: must be >= 0 (0 = off), got {self.max_paragraph_chars}")


def normalize_language(language: str, where: str = "language") -> str:
  """"zh-CN" / "en_US" -> "zh" / "en" (the script depends on the language, not the region)."""
  if not isinstance(language, str) or not language:
    raise ValueError(f"{where}: expected a language code such as 'en', got {language!r}")
  lang = language.lower()
  if lang not in LANGUAGE_SCRIPTS:
    lang = lang.replace("_", "-").split("-")[0]
  if lang not in LANGUAGE_SCRIPTS:
    raise ValueError(f"{where}: unknown language {language!r}; known: {sorted(LANGUAGE_SCRIPTS)}")
  return lang


def longest_paragraph(text: str) -> int:
  """Characters in the longest run of `text` without a line break (surrounding spaces ignored)."""
  return max((len(p.strip()) for p in _LINE_BREAK.split(text)), default=0)


def filter_reasons(text: str, *, language: str = "en", min_language_consistency: float = 0.95,
                   max_paragraph_chars: int = 2000, allow_code_blocks: bool = False,
                   require_think: bool = True) -> list[str]:
  """Why the chain of thought of `text` (a whole response) fails the readability filters; [] = keep.

  Without a think block the CoT is missing (`no_think`) when `require_think`, else the whole
  text is checked as the CoT.
  """
  cot = extract.think_content(text)
  if cot is None:
    if require_think:
      return [NO_THINK]
    cot = text
  reasons = []
  if min_language_consistency > 0:
    lang = normalize_language(language)
    # empty_score=1: a CoT of pure math has no words in any language, so nothing is mixed.
    if language_consistency(cot, lang, empty_score=1.0) < min_language_consistency:
      reasons.append(MIXED_LANGUAGE)
  if max_paragraph_chars and longest_paragraph(cot) > max_paragraph_chars:
    reasons.append(LONG_PARAGRAPH)
  if not allow_code_blocks and CODE_FENCE in cot:
    reasons.append(CODE_BLOCK)
  return reasons


# ---------------------------------------------------------------------------------- selection


def _dedup_key(text: str) -> str:
  return " ".join(text.split())


def empty_counts() -> dict[str, float]:
  counts = {"prompts": 0, "completions": 0, "correct": 0, "kept": 0, "prompts_with_kept": 0,
            "kept_response_chars": 0}
  counts.update({f"dropped/{r}": 0 for r in DROP_REASONS})
  counts.update({f"filter/{r}": 0 for r in FILTER_REASONS})  # correct completions failing each filter
  return counts


def summarize(counts: Mapping[str, float]) -> dict[str, float]:
  """Counts plus the derived rates (acceptance rate, accuracy, coverage, mean length)."""
  out = dict(counts)
  n, kept = counts["completions"], counts["kept"]
  out["acceptance_rate"] = kept / n if n else 0.0
  out["accuracy"] = counts["correct"] / n if n else 0.0
  out["prompt_coverage"] = counts["prompts_with_kept"] / counts["prompts"] if counts["prompts"] else 0.0
  out["mean_response_chars"] = counts["kept_response_chars"] / kept if kept else 0.0
  return out


def add_counts(total: dict[str, float], more: Mapping[str, float]) -> dict[str, float]:
  for key, value in more.items():
    total[key] = total.get(key, 0) + value
  return total


def _count_keys(stats: Mapping[str, float]) -> dict[str, float]:
  return {k: v for k, v in stats.items() if k in empty_counts()}


def select_samples(records: Sequence[Mapping[str, Any]], completions_per_record: Sequence[Sequence[str]],
                   scores: Sequence[Sequence[float]], *, keep_per_prompt: int,
                   finish_reasons: Optional[Sequence[Sequence[str]]] = None,
                   filters: FilterConfig = FilterConfig(), correct_threshold: float = 0.5,
                   drop_truncated: bool = True, source: str = "rejection") -> tuple[list[dict], dict]:
  """Keeps correct, finished, readable, distinct completions, at most `keep_per_prompt` per prompt.

  records[i]: the prompt record (raw `prompt`, `answer`, optional `task`, `language`, `id`);
  completions_per_record[i][j] / scores[i][j] / finish_reasons[i][j]: sample j of record i (the
  response text as it will be trained on, its accuracy score, "stop" | "length"; default all
  "stop"). Returns (SFT rows, stats: counts per drop reason and rates, see `summarize`).
  A row's id is "<source>/<record id (default: its index)>/<j>".
  """
  rows, stats, _ = _select(records, completions_per_record, scores, keep_per_prompt=keep_per_prompt,
                           finish_reasons=finish_reasons, filters=filters, correct_threshold=correct_threshold,
                           drop_truncated=drop_truncated, source=source)
  return rows, stats


def _select(records, completions_per_record, scores, *, keep_per_prompt, finish_reasons, filters,
            correct_threshold, drop_truncated, source):
  """`select_samples`, also returning the (record, sample) index of every kept row."""
  if keep_per_prompt < 1:
    raise ValueError(f"select_samples: keep_per_prompt must be >= 1, got {keep_per_prompt}")
  if not (len(records) == len(completions_per_record) == len(scores)):
    raise ValueError(f"select_samples: {len(records)} records, {len(completions_per_record)} completion "
                     f"lists and {len(scores)} score lists; they must be aligned one per record")
  if finish_reasons is not None and len(finish_reasons) != len(records):
    raise ValueError(f"select_samples: {len(finish_reasons)} finish-reason lists for {len(records)} records")
  counts = empty_counts()
  rows: list[dict] = []
  picks: list[tuple[int, int]] = []
  for i, (rec, texts, rec_scores) in enumerate(zip(records, completions_per_record, scores)):
    rec_scores = np.asarray(rec_scores, np.float64).reshape(-1)  # [k]
    if len(rec_scores) != len(texts):
      raise ValueError(f"select_samples: record {i} ({rec.get('id', '?')}) has {len(texts)} completions "
                       f"but {len(rec_scores)} scores")
    reasons_i = finish_reasons[i] if finish_reasons is not None else ["stop"] * len(texts)
    if len(reasons_i) != len(texts):
      raise ValueError(f"select_samples: record {i} has {len(texts)} completions but {len(reasons_i)} finish reasons")
    lang = normalize_language(rec.get("language") or filters.language,
                              where=f"record {rec.get('id', i)}: language")
    counts["prompts"] += 1
    seen: set[str] = set()
    kept_here = 0
    for j, (text, score, finish) in enumerate(zip(texts, rec_scores, reasons_i)):
      counts["completions"] += 1
      if not score >= correct_threshold:  # NaN scores are incorrect
        counts["dropped/incorrect"] += 1
        continue
      counts["correct"] += 1
      if drop_truncated and finish != "stop":
        counts["dropped/truncated"] += 1
        continue
      failed = filter_reasons(text, language=lang, min_language_consistency=filters.min_language_consistency,
                              max_paragraph_chars=filters.max_paragraph_chars,
                              allow_code_blocks=filters.allow_code_blocks, require_think=filters.require_think)
      if failed:
        counts["dropped/filtered"] += 1
        for reason in failed:
          counts[f"filter/{reason}"] += 1
        continue
      key = _dedup_key(text)
      if key in seen:
        counts["dropped/duplicate"] += 1
        continue
      if kept_here >= keep_per_prompt:
        counts["dropped/over_keep_limit"] += 1
        continue
      seen.add(key)
      kept_here += 1
      counts["kept"] += 1
      counts["kept_response_chars"] += len(text)
      rows.append({"prompt": rec["prompt"], "response": text, "answer": rec.get("answer"),
                   "task": rec.get("task", ""), "language": lang, "source": source,
                   "id": f"{source}/{rec.get('id', i)}/{j}"})
      picks.append((i, j))
    counts["prompts_with_kept"] += int(kept_here > 0)
  return rows, summarize(counts), picks


# ------------------------------------------------------------------------------------- mixing


def mix_with_non_reasoning(reasoning_rows: Sequence[dict], non_reasoning_rows: Sequence[dict],
                           ratio: float = 3.0, seed: int = 0) -> list[dict]:
  """`round(len(reasoning) / ratio)` non-reasoning rows (drawn without replacement) shuffled in
  with all reasoning rows. The paper: ~600k reasoning + ~200k non-reasoning samples, ratio 3.

  `ratio` = reasoning rows per non-reasoning row; `math.inf` adds none. With too few
  non-reasoning rows, all are used and a warning says so.
  """
  if not (ratio > 0):
    raise ValueError(f"mix_with_non_reasoning: ratio must be > 0 (reasoning per non-reasoning row), got {ratio}")
  rng = np.random.default_rng([int(seed), 7919])
  wanted = 0 if math.isinf(ratio) else int(round(len(reasoning_rows) / ratio))
  if wanted > len(non_reasoning_rows):
    log.warning("mix: %d non-reasoning rows wanted for %d reasoning rows at ratio %g, only %d given; using all",
                wanted, len(reasoning_rows), ratio, len(non_reasoning_rows))
    wanted = len(non_reasoning_rows)
  picked = rng.choice(len(non_reasoning_rows), size=wanted, replace=False) if wanted else []
  extra = [dict(non_reasoning_rows[int(i)]) for i in np.sort(picked)]
  for row in extra:
    row.setdefault("source", "non_reasoning")
  mixed = list(reasoning_rows) + extra
  order = rng.permutation(len(mixed))
  return [mixed[int(i)] for i in order]


# ------------------------------------------------------------------------------------- output


def _json_row(row: Mapping[str, Any]) -> str:
  return json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, ensure_ascii=False)


def write_dataset(rows: Sequence[Mapping[str, Any]], path: str, fmt: str = "jsonl") -> int:
  """Writes rows atomically (temp file + rename) as JSON Lines or ArrayRecord (one UTF-8 JSON
  object per record, what `data.sources.ArrayRecordSource` reads); returns the count. Keys
  starting with "_" (source locations) are dropped."""
  if fmt not in FORMATS:
    raise ValueError(f"write_dataset: fmt must be one of {FORMATS}, got {fmt!r}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp"
  if fmt == "jsonl":
    with open(tmp, "w", encoding="utf-8") as f:
      for row in rows:
        f.write(_json_row(row) + "\n")
  else:
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(tmp, "group_size:1")
    try:
      for row in rows:
        writer.write(_json_row(row).encode("utf-8"))
    finally:
      writer.close()
  os.replace(tmp, path)
  return len(rows)


# ------------------------------------------------------------------------ sampling + grading


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
    kept, st, picks = _select(chunk, [[texts[r] for r in rr] for rr in per], [scores[rr] for rr in per],
                              keep_per_prompt=keep_per_prompt,
                              finish_reasons=[[gen.finish_reasons[r] for r in rr] for rr in per],
                              filters=filters, correct_threshold=correct_threshold,
                              drop_truncated=drop_truncated, source=source)
    lengths = np.asarray(gen.lengths)  # [N]
    extra["kept_completion_tokens"] += int(sum(lengths[per[q][j]] for q, j in picks))
    rows.extend(kept)
    add_counts(counts, _count_keys(st))
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
