"""Long chain-of-thought traces for the offline tasks (the cold-start data of R1 §2.3.1).

Each writer turns a generated problem into (reasoning, summary, answer text): step-by-step work,
an explicit check, and — with probability `wait_prob` — a deliberate slip that the check catches,
followed by "Wait, let me re-check …" and the correction. The final answer is always right: a
test runs every trace through its task's verifier.

Arithmetic traces are written from a phrase table in English and Chinese; `mix` > 0 writes each
sentence in the other language with that probability, which is what the language-consistency
reward must learn to penalise (R1 §2.3.2 mixes Chinese into English reasoning).
"""
from __future__ import annotations

import ast
from typing import Any, Callable

import numpy as np

from r1jax.data.tasks import countdown, knights_knaves

LANGUAGES = ("en", "zh")

_PHRASES: dict[str, dict[str, str]] = {
    "add_intro": {"en": "I need to compute {a} + {b}. I will add column by column from the right, "
                        "keeping track of the carries.",
                  "zh": "我需要计算 {a} + {b}。我从右往左逐列相加，并记下每一步的进位。"},
    "add_col": {"en": "Column {k}: {x} + {y} + carry {c} = {s}, so I write {d} and carry {c2}.",
                "zh": "第 {k} 列：{x} + {y} + 进位 {c} = {s}，写下 {d}，进位 {c2}。"},
    "read": {"en": "Reading the written digits from left to right gives {r}.",
             "zh": "把写下的数字从左到右读出来，得到 {r}。"},
    "add_check_ok": {"en": "Let me check by subtracting: {r} - {b} = {a}. That matches.",
                     "zh": "用减法验算：{r} - {b} = {a}，结果一致。"},
    "add_check_bad": {"en": "Let me check by subtracting: {r} - {b} = {x}, which is not {a}.",
                      "zh": "用减法验算：{r} - {b} = {x}，这不等于 {a}。"},
    "wait": {"en": "Wait, let me re-check my steps.", "zh": "等一下，让我重新检查一下步骤。"},
    "add_fix": {"en": "In column {k} I forgot the carry: it is {x} + {y} + {c} = {s}, not {w}. "
                      "So the sum is {r}.",
                "zh": "第 {k} 列我忘了进位：应该是 {x} + {y} + {c} = {s}，而不是 {w}。所以和是 {r}。"},
    "add_summary": {"en": "Adding {a} and {b} column by column with carries gives {r}; the "
                          "subtraction check confirms it.",
                    "zh": "把 {a} 和 {b} 逐列带进位相加得到 {r}，减法验算也确认了这个结果。"},
    "mul_intro": {"en": "I need to compute {a} × {b}. I will multiply {a} by each digit of {b} and "
                        "add the shifted partial products.",
                  "zh": "我需要计算 {a} × {b}。我用 {a} 乘以 {b} 的每一位数字，再把移位后的部分积相加。"},
    "mul_part": {"en": "{a} × {y} = {p}; shifted by {k} places that is {q}.",
                 "zh": "{a} × {y} = {p}；移 {k} 位后是 {q}。"},
    "mul_sum": {"en": "Adding the partial products: {terms} = {r}.",
                "zh": "把部分积相加：{terms} = {r}。"},
    "mul_check_ok": {"en": "Let me check by dividing: {r} ÷ {b} = {a}. That matches.",
                     "zh": "用除法验算：{r} ÷ {b} = {a}，结果一致。"},
    "mul_check_bad": {"en": "Let me check by dividing: {r} ÷ {b} = {q} remainder {m}, not {a}.",
                      "zh": "用除法验算：{r} ÷ {b} = {q} 余 {m}，不等于 {a}。"},
    "mul_fix": {"en": "The partial product for the digit {y} is {a} × {y} = {p}, not {w}. "
                      "Adding again: {terms} = {r}.",
                "zh": "数字 {y} 对应的部分积是 {a} × {y} = {p}，而不是 {w}。重新相加：{terms} = {r}。"},
    "mul_summary": {"en": "Multiplying {a} by each digit of {b} and adding the partial products "
                          "gives {r}; the check confirms it.",
                    "zh": "用 {a} 乘以 {b} 的每一位并把部分积相加得到 {r}，验算也确认了这个结果。"},
}


class _Writer:
  """Picks each sentence's language: the target, or with probability `mix` the other one."""

  def __init__(self, rng: np.random.Generator, language: str, mix: float):
    if language not in LANGUAGES:
      raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    self.rng, self.language, self.mix = rng, language, mix
    self.sentences: list[str] = []
    self.other = 0

  def say(self, key: str, **kw: Any) -> None:
    lang = self.language
    if self.mix > 0 and self.rng.random() < self.mix:
      lang = next(l for l in LANGUAGES if l != self.language)
      self.other += 1
    self.sentences.append(_PHRASES[key][lang].format(**kw))

  @property
  def text(self) -> str:
    return "\n".join(self.sentences)

  @property
  def mixed_fraction(self) -> float:
    return self.other / max(1, len(self.sentences))


def _addition(w: _Writer, a: int, b: int, slip: bool) -> None:
  w.say("add_intro", a=a, b=b)
  da, db = str(a)[::-1], str(b)[::-1]
  carry, digits, cols = 0, [], []
  for k in range(max(len(da), len(db))):
    x = int(da[k]) if k < len(da) else 0
    y = int(db[k]) if k < len(db) else 0
    s = x + y + carry
    cols.append((k + 1, x, y, carry, s))
    w.say("add_col", k=k + 1, x=x, y=y, c=carry, s=s, d=s % 10, c2=s // 10)
    carry = s // 10
    digits.append(s % 10)
  if carry:
    digits.append(carry)
  r = a + b
  slipped = [c for c in cols if c[3] > 0]
  if slip and slipped:
    k, x, y, c, s = slipped[int(w.rng.integers(len(slipped)))]
    wrong = r - c * 10 ** (k - 1)
    w.say("read", r=wrong)
    w.say("add_check_bad", r=wrong, b=b, x=wrong - b, a=a)
    w.say("wait")
    w.say("add_fix", k=k, x=x, y=y, c=c, s=s, w=s - c, r=r)
  else:
    w.say("read", r=r)
  w.say("add_check_ok", r=r, b=b, a=a)


def _multiplication(w: _Writer, a: int, b: int, slip: bool) -> None:
  w.say("mul_intro", a=a, b=b)
  parts = []
  for k, y in enumerate(reversed(str(b))):
    p = a * int(y)
    parts.append((int(y), p, p * 10**k))
    w.say("mul_part", a=a, y=y, p=p, k=k, q=p * 10**k)
  r = a * b
  terms = " + ".join(str(q) for _, _, q in parts)
  candidates = [i for i, (y, p, _) in enumerate(parts) if y > 1]
  if slip and candidates:
    i = candidates[int(w.rng.integers(len(candidates)))]
    y, p, q = parts[i]
    wrong_p = p + int(w.rng.choice([-1, 1])) * 10 ** int(w.rng.integers(1, max(2, len(str(p)))))
    wrong_p = abs(wrong_p) if abs(wrong_p) != p else p + 10
    shift = q // p
    wrong_r = r - q + wrong_p * shift
    wrong_terms = " + ".join(str(wrong_p * shift if j == i else qq)
                             for j, (_, _, qq) in enumerate(parts))
    w.say("mul_sum", terms=wrong_terms, r=wrong_r)
    quotient, remainder = divmod(wrong_r, b)
    w.say("mul_check_bad", r=wrong_r, b=b, a=a, q=quotient, m=remainder)
    w.say("wait")
    w.say("mul_fix", y=y, a=a, p=p, w=wrong_p, terms=terms, r=r)
  else:
    w.say("mul_sum", terms=terms, r=r)
  w.say("mul_check_ok", r=r, b=b, a=a)


def _short_columns(a: int, b: int) -> list[tuple[int, int, int, int]]:
  """Schoolbook addition columns, least significant first: (x, y, carry in, column sum)."""
  da, db = str(a)[::-1], str(b)[::-1]
  cols, carry = [], 0
  for k in range(max(len(da), len(db))):
    x = int(da[k]) if k < len(da) else 0
    y = int(db[k]) if k < len(db) else 0
    cols.append((x, y, carry, x + y + carry))
    carry = (x + y + carry) // 10
  return cols


def short_arithmetic_trace(item: dict, rng: np.random.Generator, wait_prob: float = 0.3) -> dict[str, Any]:
  """The same schoolbook method in terse lines (~50 tokens instead of ~170): what a tiny model can
  learn in minutes. Addition goes column by column; multiplication by a one-digit number digit by
  digit, by a longer one through partial products. A slip (probability `wait_prob`) drops a carry,
  the check catches it, and "Wait, let me re-check." fixes it."""
  a, b = item["operands"]
  op = item["op"]
  r = a + b if op == "+" else a * b
  sym = "+" if op == "+" else "×"
  lines = [f"{a} {sym} {b}"]
  slip = None
  if op == "+":
    cols = _short_columns(a, b)
    # A slip forgets a carry-in whose column does not end in 0 (so later columns are unchanged).
    slippable = [k for k, (_, _, c, s) in enumerate(cols) if c and s % 10]
    slip = slippable[int(rng.integers(len(slippable)))] if slippable and rng.random() < wait_prob else None
    for k, (x, y, c, s) in enumerate(cols):
      if c and k != slip:
        lines.append(f"{x} + {y} + {c} = {s}, write {s % 10} carry {s // 10}")
      else:
        lines.append(f"{x} + {y} = {x + y}, write {(x + y) % 10} carry {s // 10}")
    check, inverse = f"{r} - {b}", a
  else:
    if b < 10:
      carry = 0
      for k, x in enumerate(map(int, str(a)[::-1])):
        p = x * b + carry
        last = k == len(str(a)) - 1
        lines.append(f"{x} × {b} + {carry} = {p}" if carry else f"{x} × {b} = {p}")
        lines[-1] += f", write {p}" if last else f", write {p % 10} carry {p // 10}"
        carry = p // 10
    else:
      parts = [a * int(y) * 10**k for k, y in enumerate(str(b)[::-1])]
      for k, y in enumerate(str(b)[::-1]):
        lines.append(f"{a} × {y}{'0' * k} = {parts[k]}")
      lines.append(" + ".join(map(str, parts)) + f" = {r}")
    check, inverse = f"{r} ÷ {b}", a
  if slip is not None:
    x, y, c, s = cols[slip]
    wrong = r - 10**slip
    lines += [f"result {wrong}", f"check {wrong} - {b} = {wrong - b}, not {a}", "Wait, let me re-check.",
              f"{x} + {y} + {c} = {s}, I forgot the carry, so the result is {r}"]
  lines += [f"result {r}", f"check {check} = {inverse}, ok"]
  return {"reasoning": "\n".join(lines), "summary": f"{a} {sym} {b} = {r}.", "answer": str(r),
          "mixed_fraction": 0.0}


def arithmetic_trace(item: dict, rng: np.random.Generator, wait_prob: float = 0.3,
                     language: str = "en", mix: float = 0.0) -> dict[str, Any]:
  a, b = item["operands"]
  op = item["op"]
  w = _Writer(rng, language, mix)
  slip = rng.random() < wait_prob
  (_addition if op == "+" else _multiplication)(w, a, b, slip)
  r = a + b if op == "+" else a * b
  # The summary is always in the target language: it is what the user reads.
  summary_key = "add_summary" if op == "+" else "mul_summary"
  summary = _PHRASES[summary_key][language].format(a=a, b=b, r=r)
  return {"reasoning": w.text, "summary": summary, "answer": str(r),
          "mixed_fraction": w.mixed_fraction}


def _steps(expr: str) -> tuple[int, list[str]]:
  """Evaluates a +-*/ expression bottom-up, one 'x op y = z' line per operation."""
  lines: list[str] = []
  sym = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}

  def ev(node):
    if isinstance(node, ast.Constant):
      return node.value
    x, y = ev(node.left), ev(node.right)
    op = type(node.op)
    z = {ast.Add: x + y, ast.Sub: x - y, ast.Mult: x * y}.get(op, x / y if y else float("nan"))
    z = int(z) if float(z).is_integer() else round(z, 3)
    lines.append(f"{x} {sym[op]} {y} = {z}")
    return z

  value = ev(ast.parse(expr, mode="eval").body)
  return value, lines


def countdown_trace(item: dict, rng: np.random.Generator, wait_prob: float = 0.3) -> dict[str, Any]:
  numbers, target = item["answer"]["numbers"], item["answer"]["target"]
  out = [f"I have the numbers {numbers} and need to reach {target}, using each number at most "
         "once with +, -, * and /."]
  for _ in range(int(rng.integers(1, 4)) if rng.random() < wait_prob else 0):
    sol = countdown._random_solution(rng, list(numbers), 10**9)  # a wrong attempt
    if sol is None or sol[0] == target:
      continue
    value, expr = sol
    out.append(f"Let me try {expr}. " + "; ".join(_steps(expr)[1]) + ".")
    out.append(f"Wait, that gives {value}, not {target}. Let me try another combination.")
  expr = item["solution"]
  value, lines = _steps(expr)
  out.append(f"Let me try {expr}. " + "; ".join(lines) + ".")
  out.append(f"That gives {value}, which is the target {target}.")
  used = sorted(node.value for node in ast.walk(ast.parse(expr, mode="eval"))
                if isinstance(node, ast.Constant))  # the numbers the expression uses
  out.append(f"Check the numbers: the expression uses {used}, each available in {numbers}, "
             "none more than once. So the equation works.")
  summary = f"Combining the numbers as {expr} reaches {target}, using each number at most once."
  return {"reasoning": "\n".join(out), "summary": summary, "answer": expr, "mixed_fraction": 0.0}


def knights_knaves_trace(item: dict, rng: np.random.Generator,
                         wait_prob: float = 0.3) -> dict[str, Any]:
  names, statements = item["names"], [tuple(s) for s in item["statements"]]
  n = len(names)
  solution = tuple(item["answer"][name] == "knight" for name in names)
  role = lambda k: "a knight" if k else "a knave"  # noqa: E731
  out = ["Knights tell the truth and knaves lie, so a statement must be true exactly when its "
         "speaker is a knight. I will go through the possible assignments."]
  cases = list(knights_knaves.itertools.product((True, False), repeat=n))
  wrong_cases = [i for i, k in enumerate(cases) if k != solution]
  # One slip per trace with probability wait_prob, at a random rejected case.
  slip_at = (wrong_cases[int(rng.integers(len(wrong_cases)))]
             if wrong_cases and rng.random() < wait_prob else -1)
  for case_index, knights in enumerate(cases):
    case = ", ".join(f"{names[i]} is {role(knights[i])}" for i in range(n))
    if knights == solution:
      out.append(f"Suppose {case}.")
      for i, s in enumerate(statements):
        t = knights_knaves.truth(s, knights)
        out.append(f"{names[i]} says \"{knights_knaves.describe(s, names, i)}\" — that is "
                   f"{'true' if t else 'false'}, consistent with {names[i]} being "
                   f"{role(knights[i])}.")
      out.append("Every statement is consistent, so this assignment works.")
      continue
    bad = next(i for i, s in enumerate(statements)
               if knights_knaves.truth(s, knights) != knights[i])
    t = knights_knaves.truth(statements[bad], knights)
    said = knights_knaves.describe(statements[bad], names, bad)
    if case_index == slip_at:
      out.append(f"Suppose {case}. This looks consistent at first.")
      out.append(f"Wait, let me re-check {names[bad]}'s statement \"{said}\": it would be "
                 f"{'true' if t else 'false'}, but {names[bad]} would be {role(knights[bad])}. "
                 "So this case fails.")
    else:
      out.append(f"Suppose {case}. Then {names[bad]}'s statement \"{said}\" is "
                 f"{'true' if t else 'false'}, impossible for {role(knights[bad])}.")
  out.append("Exactly one assignment survives, so the answer is unique.")
  answer = ", ".join(f"{names[i]} is a {item['answer'][names[i]]}" for i in range(n))
  summary = f"Checking every assignment against the statements leaves one: {answer}."
  return {"reasoning": "\n".join(out), "summary": summary, "answer": answer, "mixed_fraction": 0.0}


TRACE_STYLES = ("full", "short")

TRACE_WRITERS: dict[str, Callable[..., dict[str, Any]]] = {
    "arithmetic": arithmetic_trace, "addition": arithmetic_trace, "countdown": countdown_trace,
    "knights_knaves": knights_knaves_trace}


def trace_writer(task: str, style: str = "full") -> Callable[..., dict[str, Any]]:
  """The trace writer of `task` in `style` ("short" exists for arithmetic and addition only)."""
  if style not in TRACE_STYLES:
    raise ValueError(f"trace style must be one of {TRACE_STYLES}, got {style!r}")
  if task not in TRACE_WRITERS:
    raise ValueError(f"unknown reasoning task {task!r} (no trace writer); known: {sorted(TRACE_WRITERS)}")
  if style == "short":
    if task not in ("arithmetic", "addition"):
      raise ValueError(f"trace style 'short' exists for arithmetic and addition, not {task!r}")
    return short_arithmetic_trace
  return TRACE_WRITERS[task]
