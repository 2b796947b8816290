"""Language-consistency reward: the script classifier against `unicodedata` names, hand-labelled
mixed English/Chinese chains of thought, and bad inputs."""
import random
import time
import unicodedata

import numpy as np
import pytest

from r1jax.rewards import language
from r1jax.rewards.registry import build

# First word(s) of a Unicode character name → script (independent of the module's range table).
NAME_PREFIXES = {
    "LATIN": "latin", "FULLWIDTH LATIN": "latin", "GREEK": "greek", "CYRILLIC": "cyrillic",
    "ARMENIAN": "armenian", "HEBREW": "hebrew", "ARABIC": "arabic", "DEVANAGARI": "devanagari",
    "THAI": "thai", "HANGUL": "hangul", "HIRAGANA": "hiragana", "KATAKANA": "katakana",
    "CJK UNIFIED IDEOGRAPH": "han",
}
UNSPACED = {"han", "hiragana", "katakana", "thai"}

WORDS = {
    "latin": ["the", "sum", "We", "compute", "Therefore", "café", "naïve", "Ｆｕｌｌ"],
    "han": ["然后", "我们", "检查", "答案", "所以"],
    "cyrillic": ["сумма", "и", "Итак", "проверим"],
    "greek": ["άρα", "το", "αβ"],
    "arabic": ["إذن", "المجموع"],
    "hebrew": ["לכן", "הסכום"],
    "devanagari": ["इसलिए", "योग"],
    "thai": ["ดังนั้น", "ผลรวม"],
    "hangul": ["따라서", "합은"],
    "hiragana": ["これは", "です"],
    "katakana": ["テスト", "カタカナ"],
    "other": ["ქართული", "სამი"],  # Georgian: a script outside the table
}
SEPARATORS = [" ", "  ", ", ", ". ", "\n", " 42 ", " (3) ", "", " - "]


def reference_script(ch: str) -> str | None:
  if unicodedata.category(ch)[0] not in "LM":
    return None
  name = unicodedata.name(ch, "")
  for prefix, script in NAME_PREFIXES.items():
    if name.startswith(prefix):
      return script
  return "other" if unicodedata.category(ch)[0] == "L" else None


def reference_counts(text: str) -> dict[str, int]:
  """Brute force: walk the characters, cut runs at script changes, apply the counting rules."""
  counts: dict[str, int] = {}
  run_script, run_len = None, 0

  def flush():
    if run_script is None:
      return
    if run_script in UNSPACED:
      n = run_len
    elif run_script in ("latin", "greek"):
      n = int(run_len >= 2)
    else:
      n = 1
    if n:
      counts[run_script] = counts.get(run_script, 0) + n

  for ch in text:
    script = reference_script(ch)
    if script != run_script:
      flush()
      run_script, run_len = script, 0
    run_len += 1
  flush()
  return counts


def test_classifier_matches_unicodedata_reference():
  rng = random.Random(0)
  scripts = list(WORDS)
  for _ in range(500):
    text = "".join(rng.choice(WORDS[rng.choice(scripts)]) + rng.choice(SEPARATORS)
                   for _ in range(rng.randint(0, 12)))
    assert language.count_words_by_script(text) == reference_counts(text), repr(text)


def test_mixed_english_chinese_cot():
  cot = "First, we compute the sum. 然后我们检查答案。 The sum is 10."
  completion = f"<think>{cot}</think>\n<answer>10</answer>"
  # latin: First we compute the sum The sum is = 8 words; han: 8 characters.
  assert language.count_words_by_script(cot) == {"latin": 8, "han": 8}
  fn = build("language")
  out = fn([completion, completion], [None, None], [{}, {"language": "zh"}])
  np.testing.assert_allclose(out.scores, [8 / 16, 8 / 16])
  pure_en = "<think>We add the numbers and check the result.</think><answer>3</answer>"
  pure_zh = "<think>我们把数字相加，然后检查结果。</think><answer>3</answer>"
  out = fn([pure_en, pure_zh, pure_en, pure_zh], [None] * 4,
           [{"language": "en"}, {"language": "en"}, {"language": "zh"}, {"language": "zh"}])
  assert out.scores.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_math_is_neutral():
  cot = r"Let $x^2 + y^2 = 1$ and \frac{a}{b} so x = 3, \( \alpha \) \[ \sum_i i \] 12.5%"
  assert language.count_words_by_script(cot) == {"latin": 3}  # Let, and, so
  assert language.language_consistency(cot, "en") == 1.0
  assert language.language_consistency(cot, "zh") == 0.0
  only_math = "$x^2$ 3 + 4 = 7 \\frac{1}{2} x y"
  assert language.language_consistency(only_math, "en") == 0.0
  assert language.language_consistency(only_math, "en", empty_score=1.0) == 1.0


def test_japanese_and_korean_targets():
  assert language.language_consistency("これはテストです 漢字", "ja") == 1.0
  assert language.language_consistency("これはテストです", "zh") == 0.0
  assert language.language_consistency("따라서 합은 the", "ko") == pytest.approx(2 / 3)


def test_think_in_prompt_and_missing_think():
  fn = build("language", think_in_prompt=True)
  out = fn(["We reason here. 我们</think><answer>1</answer>", "<answer>1</answer>"])
  np.testing.assert_allclose(out.scores, [3 / 5, 0.0])
  assert out.metrics["no_think"] == 1
  plain = build("language")
  out = plain(["<think>unterminated reasoning in English", "no tags at all"])
  assert out.scores.tolist() == [0.0, 0.0] and out.metrics["no_think"] == 2


def test_bad_inputs_score_zero_fast():
  fn = build("language")
  huge = "<think>" + "word " * (1 << 20) + "</think>"  # 5 MB
  long_ok = "<think>" + "reasoning 然后 " * 30_000 + "</think>"  # 420k characters, accepted
  bad = ["", None, b"\x00\xff\xfe", "\x00\xff" * 1000, "<think>\x00\xff\ufffd</think>", huge,
         "<think>" + "\\(" * 100_000 + "</think>", 7]
  start = time.perf_counter()
  out = fn(bad + [long_ok], [None] * (len(bad) + 1), [{}] * (len(bad) + 1))
  assert time.perf_counter() - start < 1.5
  assert out.scores[:-1].tolist() == [0.0] * len(bad)
  assert out.scores[-1] == pytest.approx(1 / 3)  # 1 latin word per 2 han characters
  assert out.metrics["too_long"] == 1


def test_unknown_languages():
  with pytest.raises(ValueError, match="klingon"):
    build("language", language="klingon")
  fn = build("language")
  out = fn(["<think>hello world</think>"] * 4, [None] * 4,
           [{"language": "tlh"}, {}, {"language": "zh-CN"}, {"language": "EN_us"}])
  assert out.scores.tolist() == [0.0, 1.0, 0.0, 1.0]
  assert out.metrics["unknown_language"] == 1
