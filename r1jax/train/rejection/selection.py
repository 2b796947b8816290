"""Which sampled completions to keep: correct, finished, readable, distinct, at most
`keep_per_prompt` per prompt (the order of the checks is in the package docstring), and the
counts per drop reason that say why the others went.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from r1jax.train.rejection.filters import FILTER_REASONS, FilterConfig, filter_reasons, normalize_language

# Mutually exclusive reasons a completion is not kept (see the package docstring for the order).
DROP_REASONS = ("incorrect", "truncated", "filtered", "duplicate", "over_keep_limit")


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


def count_keys(stats: Mapping[str, float]) -> dict[str, float]:
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
  rows, stats, _ = select_with_picks(records, completions_per_record, scores, keep_per_prompt=keep_per_prompt,
                                     finish_reasons=finish_reasons, filters=filters,
                                     correct_threshold=correct_threshold, drop_truncated=drop_truncated,
                                     source=source)
  return rows, stats


def select_with_picks(records, completions_per_record, scores, *, keep_per_prompt, finish_reasons, filters,
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
