"""Text helpers shared by the rule rewards: coerce junk to text, find tag blocks and `\\boxed{}`.

Everything here is a pure string function that runs in C-speed `str` methods (`find`, `rfind`,
`count`) or one linear scan, so a multi-megabyte completion costs milliseconds, never seconds.
Rewards still cap the length they accept (`DEFAULT_MAX_CHARS`) and score longer texts 0.

Answer extraction (`final_answer`), in order:
1. the completion has a complete `<answer>…</answer>` block: its content (the last block if the
   model repeated it), narrowed to the last `\\boxed{…}` inside it when there is one;
2. the completion has an `<answer>` tag but no complete block after the last one: unterminated,
   so there is no answer (the model was cut off mid-answer);
3. no answer tag at all: the content of the last `\\boxed{…}` (or `\\fbox{…}`) anywhere;
4. otherwise no answer.
A `\\boxed{` whose braces never close (a truncated completion) is no answer, never an earlier box.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

# A 64k-token completion is about 256k characters; anything past this is junk or a runaway.
DEFAULT_MAX_CHARS = 500_000

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

AnswerSource = Literal["answer_or_boxed", "answer", "boxed"]
ANSWER_SOURCES = ("answer_or_boxed", "answer", "boxed")

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def as_text(value: Any) -> str:
  """Returns `value` as a str: None → "", bytes → UTF-8 with replacement chars, str → itself.

  Anything else (numbers, arrays, dicts) is not a completion and becomes "" so it scores 0.
  """
  if isinstance(value, str):
    return value
  if isinstance(value, (bytes, bytearray, memoryview)):
    return bytes(value).decode("utf-8", errors="replace")
  return ""


def as_answer_text(value: Any) -> str:
  """Like `as_text`, but numbers are valid reference answers (datasets store 42, not "42")."""
  if isinstance(value, bool):
    return ""
  if isinstance(value, int):
    return str(value)
  if isinstance(value, float):
    if not math.isfinite(value):
      return ""
    # Positional, never "1e-07": in LaTeX that reads as 1·e − 7.
    return np.format_float_positional(value, trim="-")
  if hasattr(value, "item") and getattr(value, "shape", None) == ():  # NumPy scalar
    return as_answer_text(value.item())
  return as_text(value)


def _balanced_brace_content(text: str, open_pos: int) -> str | None:
  """Content between `text[open_pos] == "{"` and its matching "}", or None if it never closes.

  Escaped braces (`\\{`, `\\}`) do not count, so `\\boxed{\\{1,2\\}}` yields `\\{1,2\\}`.
  """
  depth = 0
  i, n = open_pos, len(text)
  while i < n:
    ch = text[i]
    if ch == "\\":
      i += 2  # skip the escaped character
      continue
    if ch == "{":
      depth += 1
    elif ch == "}":
      depth -= 1
      if depth == 0:
        return text[open_pos + 1:i]
    i += 1
  return None


def last_boxed(text: str) -> str | None:
  """Content of the last `\\boxed{…}` / `\\fbox{…}` (or `\\boxed 5`), None if absent or unclosed."""
  pos, command = -1, ""
  for cmd in _BOX_COMMANDS:
    p = text.rfind(cmd)
    if p > pos:
      pos, command = p, cmd
  if pos < 0:
    return None
  i = pos + len(command)
  if text.startswith("{", i):
    return _balanced_brace_content(text, i)
  if i < len(text) and text[i] == " ":  # `\boxed 5`: one token, up to whitespace or `$`
    rest = text[i + 1:i + 1 + 256].lstrip(" ")
    token = rest.split(None, 1)[0] if rest.strip() else ""
    token = token.split("$", 1)[0]
    return token or None
  return None  # `\boxeds`, or `\boxed` at the very end: not a box


def final_answer(text: str, source: AnswerSource = "answer_or_boxed") -> str | None:
  """The model's final answer string, following the rules in the module docstring."""
  if source not in ANSWER_SOURCES:
    raise ValueError(f"answer source must be one of {ANSWER_SOURCES}, got {source!r}")
  if source in ("answer_or_boxed", "answer"):
    last_open = text.rfind(ANSWER_OPEN)
    if last_open >= 0:
      close = text.find(ANSWER_CLOSE, last_open)
      if close < 0:
        return None  # unterminated answer
      content = text[last_open + len(ANSWER_OPEN):close]
      boxed = last_boxed(content)
      content = boxed if boxed is not None else content
      return content.strip() or None
    if source == "answer":
      return None
  boxed = last_boxed(text)
  if boxed is None:
    return None
  return boxed.strip() or None


def think_content(text: str, think_in_prompt: bool = False) -> str | None:
  """The chain of thought: content of the first complete `<think>…</think>` block, or None.

  With `think_in_prompt` the prompt already ended with `<think>`, so the chain of thought is the
  completion up to the first `</think>`. An unterminated think block is None (a bad completion).
  """
  if think_in_prompt:
    end = text.find(THINK_CLOSE)
    return None if end < 0 else text[:end]
  start = text.find(THINK_OPEN)
  if start < 0:
    return None
  start += len(THINK_OPEN)
  end = text.find(THINK_CLOSE, start)
  return None if end < 0 else text[start:end]
