"""Evaluate a policy on held-out problems: k samples per question (T = 0.6, top-p 0.95 by default),
pass@1 averaged over the k, cons@k majority vote, unbiased pass@k, mean response length."""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import numpy as np

from r1jax.data.encode import prompt_ids
from r1jax.eval.metrics import (cluster_answers, mean_pass_at_k, pass_at_1_mean, pass_at_1_stderr,
                                standard_error)
from r1jax.eval.report import EvalResult
from r1jax.rewards.choice import choice_letter
from r1jax.rewards.extract import final_answer
from r1jax.rewards.format import format_score
from r1jax.sampling import SamplingParams


def evaluate_policy(sampler, params, tokenizer, template, records: Sequence[dict], *, benchmark: str,
                    label: str, grade: Callable[[Sequence[str], Sequence, Sequence[dict]], np.ndarray],
                    k: int = 4, temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 256,
                    stop_token_ids: Sequence[int] = (), seed: int = 0, batch_prompts: int = 64,
                    format_fn: Optional[Callable[[str], float]] = None,
                    answer_fn: Optional[Callable[[str], Optional[str]]] = final_answer) -> EvalResult:
  """records: raw problems {'prompt', 'answer', metadata}; `template` (the checkpoint's training
  template) renders them through `data.encode.prompt_ids`, the encoder every training path uses.

  `grade(texts, answers, metadata) -> [N] scores in [0, 1]` (the accuracy reward);
  `format_fn(text) -> 1.0 / 0.0` (the output format the checkpoint was trained to) gives `format_rate`;
  `answer_fn(text)` is the answer cons@k votes on (`consensus_answer(task)`; None: no cons@k).
  """
  correct_rows, answer_rows, lengths, formats = [], [], [], []
  for start in range(0, len(records), batch_prompts):
    chunk = records[start:start + batch_prompts]
    prompts = [prompt_ids(r["prompt"], tokenizer, template) for r in chunk]
    sp = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                        stop_token_ids=tuple(stop_token_ids), seed=seed + start, n=k)
    gen = sampler.generate(params, prompts, sp)
    texts = [tokenizer.decode(c) for c in gen.completions()]
    idx = np.asarray(gen.prompt_index)
    scores = np.asarray(grade(texts, [chunk[i]["answer"] for i in idx], [chunk[i] for i in idx]), np.float32)
    for q in range(len(chunk)):
      rows = np.nonzero(idx == q)[0]
      correct_rows.append(scores[rows] >= 0.5)
      if answer_fn is not None:
        answer_rows.append([answer_fn(texts[r]) for r in rows])
    lengths.extend(gen.lengths.tolist())
    if format_fn is not None:
      formats.extend(float(format_fn(t)) for t in texts)
  correct = np.asarray(correct_rows, np.float32)  # [P, k]
  # cons@k: majority answer per question; it is right iff a sample with that answer was graded right.
  cons = [_majority_correct(ans, ok) for ans, ok in zip(answer_rows, correct_rows)]
  pass_k = mean_pass_at_k(correct, [kk for kk in (1, 2, 4, 8, 16, 32, 64) if kk <= k])
  return EvalResult(benchmark=benchmark, label=label, pass_at_1=float(pass_at_1_mean(correct)),
                    pass_at_1_stderr=pass_at_1_stderr(correct), per_problem=correct.mean(axis=1).tolist(),
                    num_problems=len(records), k=k, cons_at_k=float(np.mean(cons)) if cons else None,
                    cons_at_k_stderr=standard_error(cons) if cons else None,
                    pass_at_k={kk: float(v) for kk, v in pass_k.items()}, mean_length=float(np.mean(lengths)),
                    temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                    format_rate=float(np.mean(formats)) if formats else None)


def consensus_answer(task: str) -> Optional[Callable[[str], Optional[str]]]:
  """What cons@k votes on for rows of `task`: the chosen letter for multiple choice, nothing for
  code (programs are not answers to count), else the final answer (`<answer>` / `\\boxed{}`)."""
  return {"multiple_choice": choice_letter, "code": None}.get(task, final_answer)


def trained_format(template) -> Callable[[str], float]:
  """The format check of a checkpoint trained with `template` (`evaluate_policy`'s `format_fn`):
  after a cold start the R1 format puts a readable summary between </think> and <answer>."""
  return functools.partial(format_score, allow_summary=template.name == "r1")


def _majority_correct(answers: Sequence[Optional[str]], correct: np.ndarray) -> float:

  clusters = [c for c in cluster_answers(list(answers)) if answers[c[0]] is not None]
  if not clusters:
    return 0.0
  best = max(clusters, key=len)  # first-seen wins ties (max keeps the first maximum)
  return float(bool(correct[best[0]]))
