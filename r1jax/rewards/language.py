"""Language-consistency reward (R1 paper §2.3.2): the share of chain-of-thought words that are in
the target language.

The chain of thought is the content of the `<think>…</think>` block (`think_in_prompt`: the text
before `</think>`); a completion without a closed think block scores 0, as does an empty,
non-text or over-long one.

Word/script classifier (simple, deterministic, no model):
1. Math is neutral and removed first: `$…$`, `$$…$$`, `\\(…\\)`, `\\[…\\]` spans and LaTeX
   commands (`\\frac`, `\\alpha`). Digits, punctuation, symbols and whitespace never count.
2. Each remaining letter belongs to a Unicode script by code-point block (`SCRIPT_RANGES`):
   latin, greek, cyrillic, armenian, hebrew, arabic, devanagari, thai, hangul, hiragana,
   katakana, han.
3. Words are counted per script:
   - scripts written with spaces (latin, greek, cyrillic, armenian, hebrew, arabic, devanagari,
     hangul): a word is a maximal run of letters of that script, so "iPhone中" is one latin word
     plus one han word. Single latin or greek letters are math variables (x, n, α) and are
     neutral, so "let x be" counts 2 words.
   - scripts written without spaces (han, hiragana, katakana, thai): every character is one word.
     Chinese has no word delimiters and a segmenter is out of scope; per character is stable
     and monotone in the amount of Chinese, at the cost of weighting a Chinese sentence about
     1.5× its word count.
   - letters of any other script (\\w minus digits) form "other" words, which are never in the
     target language.
4. Languages map to scripts (`LANGUAGE_SCRIPTS`): "en" (and other Latin-script codes) → latin,
   "zh" → han, "ja" → han + hiragana + katakana, "ko" → hangul (+ han), "ru" → cyrillic, ...
   A script stands in for its languages: French reasoning for an English target counts as
   consistent. That is the approximation; mixing scripts is what the paper's reward targets.

reward = (words in the target's scripts) / (all classified words); a think block with no
classified words (only math) scores `empty_score` (0 by default). The target comes from
`metadata[i]["language"]` when present (case and region ignored: "zh-CN" is "zh"), else the
`language` option ("en").
"""
from __future__ import annotations

import logging
import re
from typing import Any, Mapping, Sequence

import numpy as np

from r1jax.rewards import extract
from r1jax.rewards.registry import RewardOutput, register

log = logging.getLogger(__name__)

# Code-point blocks per script (inclusive). Combining marks inside a block belong to its script.
SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F),
              (0x300, 0x36F), (0x1E00, 0x1EFF), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)),
    "greek": ((0x370, 0x3FF), (0x1F00, 0x1FFF)),
    "cyrillic": ((0x400, 0x52F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)),
    "armenian": ((0x530, 0x58F),),
    "hebrew": ((0x591, 0x5F4),),
    "arabic": ((0x600, 0x6FF), (0x750, 0x77F), (0x8A0, 0x8FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "devanagari": ((0x900, 0x97F), (0xA8E0, 0xA8FF)),
    "thai": ((0xE00, 0xE7F),),
    "hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF)),
    "hiragana": ((0x3040, 0x309F),),
    "katakana": ((0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9D)),
    "han": ((0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3021, 0x3029), (0x3400, 0x4DBF),
            (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F)),
}
UNSPACED_SCRIPTS = frozenset({"han", "hiragana", "katakana", "thai"})  # one word per character
VARIABLE_SCRIPTS = frozenset({"latin", "greek"})  # single letters are math variables

_LATIN_LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl", "cs",
                    "ro", "hu", "tr", "id", "vi", "ca", "hr", "sk", "sl", "et", "lv", "lt")
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({"latin"}) for code in _LATIN_LANGUAGES},
    "zh": frozenset({"han"}),
    "ja": frozenset({"han", "hiragana", "katakana"}),
    "ko": frozenset({"hangul", "han"}),
    "ru": frozenset({"cyrillic"}), "uk": frozenset({"cyrillic"}), "bg": frozenset({"cyrillic"}),
    "sr": frozenset({"cyrillic", "latin"}),
    "el": frozenset({"greek"}),
    "hy": frozenset({"armenian"}),
    "he": frozenset({"hebrew"}),
    "ar": frozenset({"arabic"}), "fa": frozenset({"arabic"}), "ur": frozenset({"arabic"}),
    **{code: frozenset({"devanagari"}) for code in ("hi", "mr", "ne")},
    "th": frozenset({"thai"}),
}

# `$…$` / `$$…$$`; linear: an unclosed `$$` falls back to the `$…$` branch after one scan.
_DOLLAR_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]*\$", re.DOTALL)
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_OTHER_LETTERS = re.compile(r"[^\W\d_]+")


def _strip_delimited(text: str, open_delim: str, close_delim: str) -> str:
  """Replaces each `open_delim … close_delim` span by a space, in linear time.

  A regex with a lazy `.*?` would rescan to the end for every unclosed opener (quadratic on
  junk); here the first opener without a closer ends the search, since none after it closes.
  """
  parts, pos = [], 0
  while True:
    start = text.find(open_delim, pos)
    if start < 0:
      break
    end = text.find(close_delim, start + len(open_delim))
    if end < 0:
      break
    parts.append(text[pos:start])
    pos = end + len(close_delim)
  if not parts:
    return text
  parts.append(text[pos:])
  return " ".join(parts)


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
  return "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)


def _compile_word_patterns() -> list[tuple[str, re.Pattern, re.Pattern | None]]:
  """(script, word pattern, neutral-leftover pattern) in matching order."""
  patterns = []
  for script, ranges in SCRIPT_RANGES.items():
    cls = _char_class(ranges)
    if script in UNSPACED_SCRIPTS:
      patterns.append((script, re.compile(f"[{cls}]"), None))
    elif script in VARIABLE_SCRIPTS:
      patterns.append((script, re.compile(f"[{cls}]{{2,}}"), re.compile(f"[{cls}]")))
    else:
      patterns.append((script, re.compile(f"[{cls}]+"), None))
  return patterns


_WORD_PATTERNS = _compile_word_patterns()


def count_words_by_script(text: str) -> dict[str, int]:
  """Word counts per script (plus "other") following the module docstring's rules."""
  text = _strip_delimited(text, "\\(", "\\)")
  text = _strip_delimited(text, "\\[", "\\]")
  text = _DOLLAR_MATH.sub(" ", text)
  text = _LATEX_COMMAND.sub(" ", text)
  counts: dict[str, int] = {}
  for script, word, leftover in _WORD_PATTERNS:
    # Replace counted words by a space so later patterns see only what is left.
    text, n = word.subn(" ", text)
    if leftover is not None:
      text = leftover.sub(" ", text)
    if n:
      counts[script] = n
  n_other = len(_OTHER_LETTERS.findall(text))
  if n_other:
    counts["other"] = n_other
  return counts


def language_consistency(cot: str, language: str, empty_score: float = 0.0) -> float:
  """Fraction of classified words of `cot` written in a script of `language`."""
  if language not in LANGUAGE_SCRIPTS:
    raise KeyError(f"unknown language {language!r}; known: {sorted(LANGUAGE_SCRIPTS)}")
  counts = count_words_by_script(cot)
  total = sum(counts.values())
  if total == 0:
    return float(empty_score)
  target = sum(n for script, n in counts.items() if script in LANGUAGE_SCRIPTS[language])
  return target / total


class LanguageReward:
  """Batch reward function (registry signature) for language consistency of the CoT."""

  def __init__(self, language: str = "en", think_in_prompt: bool = False,
               empty_score: float = 0.0, max_chars: int = extract.DEFAULT_MAX_CHARS,
               language_key: str = "language"):
    if language not in LANGUAGE_SCRIPTS:
      raise ValueError(f"language reward: option language={language!r} is not one of "
                       f"{sorted(LANGUAGE_SCRIPTS)}")
    if max_chars <= 0:
      raise ValueError(f"language reward: max_chars must be positive, got {max_chars}")
    self.language = language
    self.think_in_prompt = bool(think_in_prompt)
    self.empty_score = float(empty_score)
    self.max_chars = int(max_chars)
    self.language_key = language_key

  def _target(self, meta: Any) -> str:
    if isinstance(meta, Mapping):
      lang = meta.get(self.language_key)
      if isinstance(lang, str) and lang:
        lang = lang.lower()
        # "zh-CN", "en_US": the script depends on the language, not the region.
        return lang if lang in LANGUAGE_SCRIPTS else lang.replace("_", "-").split("-")[0]
    return self.language

  def __call__(self, completions: Sequence[Any], answers: Sequence[Any] | None = None,
               metadata: Sequence[Mapping[str, Any]] | None = None) -> RewardOutput:
    n = len(completions)
    metadata = metadata if metadata is not None else [{}] * n
    scores = np.zeros(n, np.float32)  # [N]
    no_think = too_long = unknown_language = 0
    for i, completion in enumerate(completions):
      text = extract.as_text(completion)
      if len(text) > self.max_chars:
        too_long += 1
        continue
      cot = extract.think_content(text, self.think_in_prompt)
      if cot is None:
        no_think += 1
        continue
      target = self._target(metadata[i] if i < len(metadata) else None)
      if target not in LANGUAGE_SCRIPTS:
        unknown_language += 1
        continue
      scores[i] = language_consistency(cot, target, self.empty_score)
    if unknown_language:
      log.warning("language reward: %d rows name a language outside %s; scored 0",
                  unknown_language, sorted(LANGUAGE_SCRIPTS))
    metrics = {"mean": float(scores.mean()) if n else 0.0, "no_think": float(no_think),
               "too_long": float(too_long), "unknown_language": float(unknown_language)}
    return RewardOutput(scores=scores, metrics=metrics)


@register("language")
def build_language_reward(**options) -> LanguageReward:
  return LanguageReward(**options)
