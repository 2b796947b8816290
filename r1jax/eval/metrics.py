"""Evaluation metrics as pure functions: pass@1, unbiased pass@k, cons@k, reflection words, lengths.

- `pass_at_k(n, c, k)`: the unbiased estimator of Chen et al. (2021),
  1 - C(n-c, k) / C(n, k), in its product form 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never
  forms a binomial coefficient and so neither overflows nor loses precision for n in the thousands.
- `pass_at_1_mean(correct)`: the paper's pass@1, the mean over problems of the mean correctness of
  the k samples drawn for each (T = 0.6, top-p 0.95 in the paper).
- `cons_at_k(answers, gold, ...)`: majority vote over the k extracted answers of each problem,
  with equivalent answers clustered together (a caller-supplied equivalence such as
  `math_equivalent`, else a normalised string); the winning cluster is then checked against gold.
- `reflection_word_frequency(texts)`: how often "wait", "verify", "re-check", ... occur, the
  "aha moment" signal of the paper's R1-Zero analysis.

math-verify is imported only inside `math_equivalent`, so importing this module stays cheap.
"""
from __future__ import annotations

import functools
import re
import threading
from typing import Any, Callable, Literal, Sequence

import numpy as np

Equivalence = Callable[[str, str], bool]

DEFAULT_REFLECTION_WORDS = ("wait", "verify", "re-check", "recheck", "check again",
                            "let me double-check", "mistake", "however", "hmm")


# ----------------------------------------------------------------------------------------------
# pass@k


def _as_int_array(name: str, value: Any) -> np.ndarray:
  arr = np.asarray(value)
  if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                               or np.issubdtype(arr.dtype, np.floating)):
    raise TypeError(f"pass_at_k: {name} must hold integers, got dtype {arr.dtype}")
  if np.issubdtype(arr.dtype, np.floating):
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
      raise ValueError(f"pass_at_k: {name} must hold whole numbers, got {arr.tolist()!r}")
    arr = arr.astype(np.int64)
  return arr


def _where(shape: tuple[int, ...], flat_index: int) -> str:
  """" (problem i)" for an entry of a per-problem array; "" for scalar inputs."""
  if not shape:
    return ""
  index = tuple(int(i) for i in np.unravel_index(flat_index, shape))
  return f" (problem {index[0] if len(index) == 1 else index})"


def pass_at_k(n: Any, c: Any, k: int) -> float | np.ndarray:
  """Unbiased pass@k for problems with `n` samples of which `c` are correct.

  `n` and `c` are ints or integer arrays (broadcast against each other, one entry per problem);
  `k` is one int. Returns a float for scalar inputs, else a float64 array of the broadcast shape.
  Raises ValueError naming the values when k > n, c > n or anything is negative.
  """
  if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
    raise TypeError(f"pass_at_k: k must be an int, got {k!r}")
  k = int(k)
  if k < 1:
    raise ValueError(f"pass_at_k: k must be >= 1, got k={k}")
  n_arr, c_arr = np.broadcast_arrays(_as_int_array("n", n), _as_int_array("c", c))
  shape = n_arr.shape
  n_flat, c_flat = n_arr.ravel(), c_arr.ravel()
  for i, (ni, ci) in enumerate(zip(n_flat.tolist(), c_flat.tolist())):
    if ci < 0 or ni < 0:
      raise ValueError(f"pass_at_k: n and c must be >= 0, got n={ni}, c={ci}{_where(shape, i)}")
    if ci > ni:
      raise ValueError(f"pass_at_k: c={ci} correct exceeds n={ni} samples{_where(shape, i)}")
    if k > ni:
      raise ValueError(f"pass_at_k: k={k} exceeds the n={ni} samples drawn{_where(shape, i)}; "
                       f"draw at least k samples per problem")
  out = np.empty(n_flat.shape, np.float64)
  for i, (ni, ci) in enumerate(zip(n_flat.tolist(), c_flat.tolist())):
    if ni - ci < k:  # every k-subset contains a correct sample
      out[i] = 1.0
    else:  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i)
      out[i] = 1.0 - float(np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1, dtype=np.float64)))
  out = out.reshape(shape)
  return float(out) if out.ndim == 0 else out


def _correct_matrix(correct: Any, fn: str) -> np.ndarray:
  arr = np.asarray(correct)
  if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
    raise ValueError(f"{fn}: correct must be a non-empty 2-D array [problems, samples], "
                     f"got shape {arr.shape}")
  if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
    raise TypeError(f"{fn}: correct must be bool or numeric, got dtype {arr.dtype}")
  arr = arr.astype(np.float64)
  bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
  if bad.any():
    p, s = np.argwhere(bad)[0]
    raise ValueError(f"{fn}: correctness must lie in [0, 1], got {arr[p, s]} at problem {p}, "
                     f"sample {s}")
  return arr


def pass_at_1_mean(correct: Any) -> float:
  """The paper's pass@1: mean over problems of the mean correctness of each problem's k samples.

  `correct` is [P, k] (bool, or scores in [0, 1]).
  """
  arr = _correct_matrix(correct, "pass_at_1_mean")  # [P, k]
  return float(arr.mean(axis=1).mean())


def standard_error(values: Any) -> float:
  """std (ddof 1) / sqrt(n) of a 1-D sample; 0 for fewer than two values."""
  v = np.asarray(values, np.float64).reshape(-1)
  return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0


def pass_at_1_stderr(correct: Any) -> float:
  """Standard error of `pass_at_1_mean` over problems: `standard_error` of the per-problem means.

  The k samples of one problem are not independent draws of the benchmark, so the problem is the
  unit; 0 for fewer than two problems.
  """
  return standard_error(_correct_matrix(correct, "pass_at_1_stderr").mean(axis=1))  # [P, k] -> [P]


def mean_pass_at_k(correct: Any, ks: Sequence[int]) -> dict[int, float]:
  """{k: mean over problems of unbiased pass@k} from a boolean [P, n] correctness matrix."""
  arr = _correct_matrix(correct, "mean_pass_at_k")  # [P, n]
  if np.any((arr != 0) & (arr != 1)):
    raise ValueError("mean_pass_at_k: correct must be boolean (0/1) per sample for pass@k")
  n = arr.shape[1]
  c = arr.sum(axis=1).astype(np.int64)  # [P]
  return {int(k): float(np.mean(pass_at_k(n, c, int(k)))) for k in ks}


# ----------------------------------------------------------------------------------------------
# Answer equivalence and cons@k

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
_LATEX_SPACING = re.compile(r"\\[,;:! ]|\\left|\\right|\\displaystyle")
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _unwrap_command(s: str, command: str) -> str:
  """`\\boxed{x}` -> `x` when the whole string is one such command with balanced braces."""
  prefix = command + "{"
  if not (s.startswith(prefix) and s.endswith("}")):
    return s
  depth = 0
  for i, ch in enumerate(s[len(prefix) - 1:], start=len(prefix) - 1):
    depth += (ch == "{") - (ch == "}")
    if depth == 0:
      return s[len(prefix):-1] if i == len(s) - 1 else s
  return s


def normalize_answer(answer: str) -> str:
  """Canonical string for clustering answers without math-verify.

  Strips math delimiters (`$…$`, `\\(…\\)`, `\\[…\\]`), one outer `\\boxed{}`/`\\text{}`,
  LaTeX spacing and `\\left`/`\\right`, all whitespace, a trailing period, and case; maps
  `\\dfrac`/`\\tfrac` to `\\frac`, thousands separators ("1,000") away, and a plain decimal
  number to its shortest form ("0.50" -> "0.5", "3.0" -> "3").
  """
  s = str(answer).strip()
  changed = True
  while changed:
    before = s
    for left, right in _WRAPPERS:
      if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
        s = s[len(left):len(s) - len(right)].strip()
    for command in ("\\boxed", "\\text", "\\mathrm"):
      s = _unwrap_command(s, command).strip()
    s = s.rstrip(".").strip()
    changed = s != before
  s = _LATEX_SPACING.sub("", s)
  s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
  s = re.sub(r"\s+", "", s).lower()
  if _THOUSANDS.fullmatch(s):
    s = s.replace(",", "")
  if _NUMBER.fullmatch(s):
    value = float(s)
    s = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
  return s


@functools.lru_cache(maxsize=4096)
def _math_parse(text: str, timeout_s: int | None) -> tuple:
  from math_verify import parse  # lazy: math-verify pulls in sympy (~0.5 s)

  # math-verify finds LaTeX only inside delimiters or \boxed{}: a bare "\frac{1}{2}" or
  # "2\sqrt{2}" must be wrapped, or it parses to nothing (or to "2").
  variants = [text] if any(d in text for d in ("$", "\\(", "\\[", "\\boxed")) else \
      ["\\boxed{" + text + "}", "$" + text + "$", text]
  fallback: list = []
  for variant in variants:
    parsed = parse(variant, parsing_timeout=timeout_s)
    if any(not isinstance(p, str) for p in parsed):
      return tuple(parsed)
    if parsed and not fallback:
      fallback = parsed
  return tuple(fallback)


@functools.lru_cache(maxsize=16384)
def _math_equivalent_cached(a: str, b: str, timeout_s: int | None) -> bool:
  from math_verify import verify

  parsed_a, parsed_b = _math_parse(a, timeout_s), _math_parse(b, timeout_s)
  if not parsed_a or not parsed_b:  # not math at all ("yes", "B"): compare as strings
    return normalize_answer(a) == normalize_answer(b)
  try:
    return bool(verify(list(parsed_a), list(parsed_b), timeout_seconds=timeout_s))
  except Exception:  # noqa: BLE001 — a sympy failure on one pair means "not shown equal"
    return False


def math_equivalent(a: str, b: str, timeout_s: int = 2) -> bool:
  """True when math-verify shows `a` and `b` equal ("\\frac{1}{2}" vs "0.5"); cached per pair.

  Identical or identically normalised strings are equal without parsing. Answers that are not
  math (nothing parses) fall back to `normalize_answer` equality. math-verify's timeouts use
  `signal.alarm`, which only works in a main thread; elsewhere the timeouts are off. For
  untrusted answers at scale prefer the worker-process grader in `r1jax.rewards.math`.
  """
  a, b = str(a), str(b)
  if a == b or normalize_answer(a) == normalize_answer(b):
    return True
  in_main = threading.current_thread() is threading.main_thread()
  if b < a:  # the relation is symmetric: one cache entry per unordered pair
    a, b = b, a
  return _math_equivalent_cached(a, b, timeout_s if in_main else None)


def cluster_answers(answers: Sequence[str | None], equivalent: Equivalence | None = None
                    ) -> list[list[int]]:
  """Groups the indices of non-None `answers` into clusters of equivalent answers.

  Clusters are in order of first appearance. With `equivalent`, an answer joins the first
  cluster whose first member (its representative) it is equivalent to, so a non-transitive
  relation still gives a deterministic result; without it, answers cluster by `normalize_answer`.
  """
  clusters: list[list[int]] = []
  by_key: dict[str, int] = {}  # exact string (or normalised key) -> cluster index
  for i, answer in enumerate(answers):
    if answer is None:
      continue
    key = normalize_answer(answer) if equivalent is None else answer
    index = by_key.get(key)
    if index is None and equivalent is not None:
      index = next((j for j, members in enumerate(clusters)
                    if equivalent(answers[members[0]], answer)), None)
    if index is None:
      index = len(clusters)
      clusters.append([])
    by_key[key] = index
    clusters[index].append(i)
  return clusters


def majority_vote(answers: Sequence[str | None], equivalent: Equivalence | None = None
                  ) -> tuple[str | None, int]:
  """(winning answer, its votes): the largest cluster's first-seen member.

  Ties go to the cluster seen first. None (no extractable answer) never votes, so it wins only
  when every answer is None, which returns (None, 0).
  """
  clusters = cluster_answers(answers, equivalent)
  if not clusters:
    return None, 0
  best = max(clusters, key=len)  # max() keeps the first of equal maxima: first-seen wins ties
  return answers[best[0]], len(best)


def consensus_correct(answers: Sequence[Sequence[str | None]], gold: Sequence[Any],
                      equivalent: Equivalence | None = None,
                      is_correct: Callable[[str, Any], bool] | None = None) -> np.ndarray:
  """Per problem, whether the majority-vote answer is correct: bool [P].

  `answers[p]` holds the k extracted answers of problem p (None where nothing was extracted).
  `is_correct(answer, gold)` defaults to `equivalent(answer, str(gold))`, or to normalised string
  equality when no `equivalent` is given. A problem whose answers are all None is incorrect.
  """
  if len(answers) != len(gold):
    raise ValueError(f"cons_at_k: {len(answers)} answer lists but {len(gold)} gold answers")
  if is_correct is None:
    if equivalent is None:
      is_correct = lambda answer, ref: normalize_answer(answer) == normalize_answer(str(ref))
    else:
      is_correct = lambda answer, ref: equivalent(answer, str(ref))
  out = np.zeros(len(answers), dtype=bool)
  for p, (problem_answers, ref) in enumerate(zip(answers, gold)):
    if isinstance(problem_answers, str):
      raise TypeError(f"cons_at_k: answers[{p}] must be a list of answers, got a string")
    for s, answer in enumerate(problem_answers):
      if answer is not None and not isinstance(answer, str):
        raise TypeError(f"cons_at_k: answers[{p}][{s}] must be str or None, got "
                        f"{type(answer).__name__}")
    winner, _ = majority_vote(problem_answers, equivalent)
    out[p] = winner is not None and bool(is_correct(winner, ref))
  return out


def cons_at_k(answers: Sequence[Sequence[str | None]], gold: Sequence[Any],
              equivalent: Equivalence | None = None,
              is_correct: Callable[[str, Any], bool] | None = None) -> float:
  """cons@k: fraction of problems whose majority-vote answer is correct (see `consensus_correct`)."""
  if len(answers) == 0:
    raise ValueError("cons_at_k: no problems given")
  return float(np.mean(consensus_correct(answers, gold, equivalent, is_correct)))


# ----------------------------------------------------------------------------------------------
# Reflection words and lengths


@functools.lru_cache(maxsize=256)
def _word_pattern(word: str) -> re.Pattern:
  parts = word.split()
  if not parts:
    raise ValueError(f"reflection_word_frequency: empty word {word!r}")
  # Not inside a longer word ("await", "waiting"); any whitespace between words of a phrase.
  return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(p) for p in parts) + r"(?!\w)",
                    re.IGNORECASE)


def reflection_word_counts(text: str, words: Sequence[str] = DEFAULT_REFLECTION_WORDS
                           ) -> dict[str, int]:
  """Occurrences of each word or phrase in `text` (case-insensitive, whole words only)."""
  return {w: len(_word_pattern(w).findall(text)) for w in words}


def reflection_word_frequency(texts: Sequence[str],
                              words: Sequence[str] = DEFAULT_REFLECTION_WORDS,
                              per: Literal["1k_words", "completion"] = "1k_words"
                              ) -> dict[str, float]:
  """How often each reflection word occurs across `texts`.

  per="1k_words": occurrences per 1,000 whitespace-separated words of all texts together (so
  longer responses do not inflate the rate). per="completion": mean occurrences per text.
  Matching is case-insensitive on whole words ("wait" counts "Wait," but not "waiting");
  a phrase matches across any whitespace. Empty input gives 0.0 for every word.
  """
  if isinstance(texts, str):
    raise TypeError("reflection_word_frequency: texts must be a list of strings, got one string")
  if per not in ("1k_words", "completion"):
    raise ValueError(f"reflection_word_frequency: per must be '1k_words' or 'completion', "
                     f"got {per!r}")
  totals = dict.fromkeys(words, 0)
  num_words = 0
  for text in texts:
    for w, count in reflection_word_counts(text, words).items():
      totals[w] += count
    num_words += len(text.split())
  denominator = num_words / 1000.0 if per == "1k_words" else len(texts)
  return {w: (totals[w] / denominator if denominator else 0.0) for w in words}


def reflection_metrics(texts: Sequence[str], words: Sequence[str] = DEFAULT_REFLECTION_WORDS,
                       prefix: str = "reflection/") -> dict[str, float]:
  """Reflection frequencies per 1k words keyed `{prefix}{word}`, the keys the plots look for."""
  return {prefix + w: v for w, v in reflection_word_frequency(texts, words).items()}


def response_length_stats(lengths: Any, max_length: int | None = None) -> dict[str, float]:
  """Summary of response lengths (tokens): count, mean, std, min, p50, p90, max.

  With `max_length`, also `frac_at_max`, the fraction that hit the limit (likely truncated).
  """
  arr = np.asarray(lengths, dtype=np.float64).ravel()
  if arr.size == 0:
    raise ValueError("response_length_stats: no lengths given")
  if not np.all(np.isfinite(arr)) or np.any(arr < 0):
    raise ValueError(f"response_length_stats: lengths must be finite and >= 0, got min "
                     f"{np.nanmin(arr) if not np.all(np.isnan(arr)) else 'nan'}")
  stats = {
      "count": float(arr.size), "mean": float(arr.mean()), "std": float(arr.std()),
      "min": float(arr.min()), "p50": float(np.percentile(arr, 50)),
      "p90": float(np.percentile(arr, 90)), "max": float(arr.max()),
  }
  if max_length is not None:
    stats["frac_at_max"] = float(np.mean(arr >= max_length))
  return stats
