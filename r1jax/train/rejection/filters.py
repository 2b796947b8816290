"""Readability filters on the chain of thought of a completion (see the package docstring).

The chain of thought is the `<think>…</think>` block of the response; `filter_reasons` names
every filter it fails (`no_think`, `mixed_language`, `long_paragraph`, `code_block`).
"""
from __future__ import annotations

import dataclasses
import re

from r1jax.rewards import extract
from r1jax.rewards.language import LANGUAGE_SCRIPTS, language_consistency

NO_THINK, MIXED_LANGUAGE, LONG_PARAGRAPH, CODE_BLOCK = "no_think", "mixed_language", "long_paragraph", "code_block"
FILTER_REASONS = (NO_THINK, MIXED_LANGUAGE, LONG_PARAGRAPH, CODE_BLOCK)
CODE_FENCE = "```"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclasses.dataclass(frozen=True)
class FilterConfig:
  """Readability filters on the chain of thought (package docstring). `language` is the default
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
