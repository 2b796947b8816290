"""Multiple-choice accuracy (GPQA Diamond): the letter the completion chose, against the key.

`choice_letter(text)` finds the chosen letter (A-D by default), in this order:
1. a complete `<answer>…</answer>` block, or with none the last `\\boxed{}` (`extract.final_answer`):
   the letter in it — a bare or wrapped letter ("B", "(B)", "B)", "**B**", "\\text{B}"), an option
   label ("B) 3.2 eV", "(B) ..."), the last "answer is B" / "Answer: B", or the one standalone
   capital letter it holds; none, or several different ones ("B or C"), is no answer;
2. an `<answer>` tag with no complete block after it: cut off, no answer;
3. otherwise the last "answer is (B)" / "Answer: B" phrase anywhere in the text, or the whole
   text when it is only a (wrapped) letter.
The reward `multiple_choice` scores 1.0 when that letter is the reference (`answer`, e.g. "C").
"""
from __future__ import annotations

import functools
import re
from typing import Any

from r1jax.rewards import extract
from r1jax.rewards.registry import register_verifier

LETTERS = "ABCD"
_LATEX_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mathit|mbox)\s*\{([^{}]*)\}")
_DECORATION = str.maketrans("", "", "$*`_")


@functools.lru_cache(maxsize=None)
def _patterns(letters: str) -> tuple[re.Pattern, ...]:
  cls = "[" + re.escape(letters) + "]"
  return (
      re.compile(r"[(\[]?\s*(" + cls + r")\s*[)\]]?\s*[.:]?", re.IGNORECASE),   # the whole text
      re.compile(r"[(\[]?(" + cls + r")[)\].:](?:\s|$)"),                      # an option label
      re.compile(r"answer\s*(?:is|:)?\s*(?:option|choice)?\s*[(\[]?\s*(" + cls + r")(?![A-Za-z])",
                 re.IGNORECASE),                                                # "the answer is B"
      re.compile(r"(?<![A-Za-z])(" + cls + r")(?![A-Za-z])"))                  # a standalone letter


def _letter_in(block: str, letters: str) -> str | None:
  whole, label, phrase, standalone = _patterns(letters)
  s = _LATEX_WRAP.sub(r"\1", block).translate(_DECORATION).strip()
  m = whole.fullmatch(s) or label.match(s)
  if m:
    return m.group(1).upper()
  found = phrase.findall(s)
  if found:
    return found[-1].upper()
  distinct = set(standalone.findall(s))
  return distinct.pop() if len(distinct) == 1 else None


def choice_letter(text: Any, letters: str = LETTERS) -> str | None:
  """The chosen option's letter (rules in the module docstring), or None."""
  text = extract.as_text(text)
  if len(text) > extract.DEFAULT_MAX_CHARS:
    return None
  block = extract.final_answer(text)
  if block is not None:
    return _letter_in(block, letters)
  if text.rfind(extract.ANSWER_OPEN) >= 0:
    return None  # cut off inside the answer
  whole, _, phrase, _ = _patterns(letters)
  s = _LATEX_WRAP.sub(r"\1", text).translate(_DECORATION).strip()
  found = phrase.findall(s)
  if found:
    return found[-1].upper()
  m = whole.fullmatch(s)
  return m.group(1).upper() if m else None


@register_verifier("multiple_choice")
def verify_choice(completion: str, answer: Any) -> float:
  """1.0 when the chosen letter is the reference letter; a reference that is not one raises
  (counted as an error by the reward, never scored)."""
  key = str(answer).strip().upper()
  if len(key) != 1 or key not in LETTERS:
    raise ValueError(f"multiple_choice: the reference must be one letter of {LETTERS}, got {answer!r}")
  return 1.0 if choice_letter(completion) == key else 0.0
