"""Format reward: the completion follows R1-Zero's `<think>…</think> <answer>…</answer>` template.

A completion is checked against four conditions (tags are exact, lower-case, no inner spaces):

  think   exactly one `<think>` and one `</think>`, in that order, with non-whitespace text
          between them. With `think_in_prompt` (the prompt already ends with `<think>`, as in
          setups that force the model into its reasoning) the completion must hold *no* `<think>`
          and exactly one `</think>`, with non-whitespace text before it.
  answer  exactly one `<answer>` and one `</answer>`, in that order, with non-whitespace text
          between them.
  order   `think` and `answer` hold, and only whitespace lies between `</think>` and `<answer>`
          (so the answer is not nested in, or before, the reasoning). With `allow_summary` (the R1
          format after a cold start: reasoning, then a readable summary, then the answer) any
          tag-free text may lie there.
  edges   only whitespace before `<think>` (not checked with `think_in_prompt`, where the
          completion starts inside the reasoning) and only whitespace after `</answer>`.

Modes:
  strict  (default, the paper's reward) 1.0 if all four hold, else 0.0. Leading newlines, spaces
          between the blocks and trailing whitespace are fine; anything else is not.
  lenient 0.25 per condition that holds: a dense signal for small models that must first learn
          the tags. lenient == 1.0 exactly when strict == 1.0.

Completions must be decoded with special tokens skipped: a trailing `<|endoftext|>` is text after
`</answer>`. Empty, non-text, and over-long (> `max_chars`) completions score 0 and are counted.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from r1jax.rewards import extract
from r1jax.rewards.extract import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from r1jax.rewards.registry import RewardOutput, register

FORMAT_MODES = ("strict", "lenient")


@dataclasses.dataclass(frozen=True)
class FormatChecks:
  think: bool
  answer: bool
  order: bool
  edges: bool

  @property
  def strict(self) -> bool:
    return self.think and self.answer and self.order and self.edges

  @property
  def fraction(self) -> float:
    return (self.think + self.answer + self.order + self.edges) / 4.0


def check_format(text: str, think_in_prompt: bool = False, allow_summary: bool = False) -> FormatChecks:
  """Evaluates the four conditions of the module docstring on one completion."""
  n_think_open = text.count(THINK_OPEN)
  n_think_close = text.count(THINK_CLOSE)
  think_open = text.find(THINK_OPEN)
  think_close = text.find(THINK_CLOSE)
  if think_in_prompt:
    think = n_think_open == 0 and n_think_close == 1 and bool(text[:think_close].strip())
  else:
    think = (n_think_open == 1 and n_think_close == 1 and think_open < think_close
             and bool(text[think_open + len(THINK_OPEN):think_close].strip()))

  answer_open = text.find(ANSWER_OPEN)
  answer_close = text.find(ANSWER_CLOSE)
  answer = (text.count(ANSWER_OPEN) == 1 and text.count(ANSWER_CLOSE) == 1
            and 0 <= answer_open < answer_close
            and bool(text[answer_open + len(ANSWER_OPEN):answer_close].strip()))

  between = text[think_close + len(THINK_CLOSE):answer_open] if think and answer else ""
  order = (think and answer and think_close < answer_open
           and (allow_summary or not between.strip()))

  last_close = text.rfind(ANSWER_CLOSE)
  tail_ok = last_close >= 0 and not text[last_close + len(ANSWER_CLOSE):].strip()
  if think_in_prompt:
    head_ok = True
  else:
    head_ok = think_open >= 0 and not text[:think_open].strip()
  edges = head_ok and tail_ok
  return FormatChecks(think=think, answer=answer, order=order, edges=edges)


def format_score(text: Any, mode: str = "strict", think_in_prompt: bool = False,
                 max_chars: int = extract.DEFAULT_MAX_CHARS, allow_summary: bool = False) -> float:
  """Format reward of one completion (any type; non-text, empty or over-long → 0.0)."""
  text = extract.as_text(text)
  if not text or len(text) > max_chars:
    return 0.0
  checks = check_format(text, think_in_prompt, allow_summary)
  return float(checks.strict) if mode == "strict" else checks.fraction


class FormatReward:
  """Batch reward function (registry signature) for the format reward."""

  def __init__(self, mode: str = "strict", think_in_prompt: bool = False,
               max_chars: int = extract.DEFAULT_MAX_CHARS, allow_summary: bool = False):
    if mode not in FORMAT_MODES:
      raise ValueError(f"format reward: mode must be one of {FORMAT_MODES}, got {mode!r}")
    if max_chars <= 0:
      raise ValueError(f"format reward: max_chars must be positive, got {max_chars}")
    self.mode = mode
    self.think_in_prompt = bool(think_in_prompt)
    self.max_chars = int(max_chars)
    self.allow_summary = bool(allow_summary)

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any] | None = None,
               metadata: Sequence[Mapping[str, Any]] | None = None) -> RewardOutput:
    scores = np.zeros(len(completions), np.float32)  # [N]
    too_long = empty = 0
    for i, completion in enumerate(completions):
      text = extract.as_text(completion)
      if not text.strip():
        empty += 1
      elif len(text) > self.max_chars:
        too_long += 1
      else:
        scores[i] = format_score(text, self.mode, self.think_in_prompt, self.max_chars, self.allow_summary)
    metrics = {"mean": float(scores.mean()) if len(scores) else 0.0,
               "empty": float(empty), "too_long": float(too_long)}
    return RewardOutput(scores=scores, metrics=metrics)


@register("format")
def build_format_reward(**options) -> FormatReward:
  return FormatReward(**options)
