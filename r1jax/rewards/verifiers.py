"""Exact verifiers of the offline reasoning tasks, registered as rewards under the task names.

r1jax/data/tasks/ generates the problems ({prompt, answer, task, …}); each task's rows are graded
by the reward of the same name, which the `accuracy` reward finds through its routing (routing.py)
with no registration step anywhere else. Each verifier is a pure per-item function of the
completion and the reference answer, 1.0 correct and 0.0 otherwise, and judges the stripped
content of the last complete `<answer>…</answer>` block:

  countdown       answer {"target": int, "numbers": [int, ...]} (or its JSON): an expression of
                  integer literals, + − × ÷ and parentheses that equals the target exactly
                  (fractions), each given number used at most once ("… = 24" judges the left side).
                  verify_countdown("<answer>(25 - 5) * 3</answer>", answer) -> 1.0
  arithmetic,     answer "1234": the exact integer ("1,234", "= 1234.", "1234.0" are accepted).
  addition        verify_arithmetic("<answer>1,234</answer>", "1234") -> 1.0
  knights_knaves  answer {"Alice": "knight", "Bob": "knave"} (or its JSON): every inhabitant's
                  role, and no one else's.
                  verify_knights_knaves("<answer>Alice is a knight, Bob is a knave</answer>", answer)
"""
from __future__ import annotations

import ast
import collections
import json
import re
from fractions import Fraction
from typing import Any

from r1jax.rewards.registry import register_verifier

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.S)


def answer_block(completion: Any) -> str | None:
  """The stripped content of the last complete `<answer>…</answer>` block, or None."""
  if not isinstance(completion, str):
    return None
  found = _ANSWER_RE.findall(completion)
  return found[-1].strip() if found else None


# --- countdown ----------------------------------------------------------------------------------

_UNICODE_OPS = str.maketrans({"×": "*", "·": "*", "÷": "/", "−": "-", "–": "-"})


class _BadExpression(ValueError):
  pass


def evaluate(expr: str) -> tuple[Fraction, list[int]]:
  """Exact value of an arithmetic expression and the integer literals it uses.

  Only integer literals, + − × ÷ and parentheses are allowed (no unary minus, no powers, no
  names); raises ValueError otherwise or on division by zero.
  """
  text = expr.translate(_UNICODE_OPS)
  if len(text) > 200:
    raise _BadExpression("expression too long")
  try:
    tree = ast.parse(text.strip(), mode="eval")
  except SyntaxError as e:
    raise _BadExpression(f"not an expression: {e.msg}") from e
  used: list[int] = []

  def ev(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
      used.append(node.value)
      return Fraction(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
      a, b = ev(node.left), ev(node.right)
      if isinstance(node.op, ast.Add):
        return a + b
      if isinstance(node.op, ast.Sub):
        return a - b
      if isinstance(node.op, ast.Mult):
        return a * b
      if b == 0:
        raise _BadExpression("division by zero")
      return a / b
    raise _BadExpression(f"disallowed element {type(node).__name__}")

  return ev(tree.body), used


def _countdown_answer(answer: Any) -> dict:
  if isinstance(answer, str):
    answer = json.loads(answer)
  return {"target": int(answer["target"]), "numbers": [int(x) for x in answer["numbers"]]}


def check_expression(expr: str, answer: Any) -> bool:
  """True when `expr` equals the target using each given number at most once."""
  ans = _countdown_answer(answer)
  if "=" in expr:  # "(25 - 5) * 3 = 60": judge the left side
    expr = expr.split("=")[0]
  try:
    value, used = evaluate(expr)
  except ValueError:
    return False
  available = collections.Counter(ans["numbers"])
  if any(c > available[x] for x, c in collections.Counter(used).items()):
    return False
  return value == ans["target"]


@register_verifier("countdown")
def verify_countdown(completion: str, answer: Any) -> float:
  """1.0 when the last <answer> block is an expression reaching the target, else 0.0."""
  expr = answer_block(completion)
  if expr is None:
    return 0.0
  return 1.0 if check_expression(expr, answer) else 0.0


# --- arithmetic, addition -----------------------------------------------------------------------

_INT_RE = re.compile(r"^[+-]?\d+$")


def parse_int(text: str) -> int | None:
  """'1,234' / '1 234' / '= 1234.' / '1234.0' -> 1234; anything else -> None."""
  t = text.strip()
  if "=" in t:
    t = t.split("=")[-1]
  t = t.replace(",", "").replace(" ", "").replace("\u202f", "").rstrip(".")
  if t.endswith(".0"):
    t = t[:-2]
  return int(t) if _INT_RE.match(t) else None


@register_verifier("addition")  # the arithmetic task restricted to "+": the same answers
@register_verifier("arithmetic")
def verify_arithmetic(completion: str, answer: Any) -> float:
  """1.0 when the last <answer> block holds exactly the reference integer."""
  got = answer_block(completion)
  if got is None:
    return 0.0
  value = parse_int(got)
  return 1.0 if value is not None and value == int(answer) else 0.0


# --- knights and knaves -------------------------------------------------------------------------

_CLAIM_RE = re.compile(r"\b([A-Z][a-z]+)\s+is\s+a\s+(knight|knave)\b", re.I)


def parse_claims(text: str) -> dict[str, str] | None:
  """'Alice is a knight, Bob is a knave' -> {'Alice': 'knight', 'Bob': 'knave'}; None if a name
  is claimed both ways."""
  claims: dict[str, str] = {}
  for name, role in _CLAIM_RE.findall(text):
    name, role = name.capitalize(), role.lower()
    if claims.get(name, role) != role:
      return None
    claims[name] = role
  return claims


@register_verifier("knights_knaves")
def verify_knights_knaves(completion: str, answer: Any) -> float:
  """1.0 when the last <answer> block names every inhabitant's role correctly and no one else."""
  got = answer_block(completion)
  if got is None:
    return 0.0
  if isinstance(answer, str):
    answer = json.loads(answer)
  claims = parse_claims(got)
  return 1.0 if claims is not None and claims == dict(answer) else 0.0
