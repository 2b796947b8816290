"""AIME 2024 and MATH-500 from local files, graded by the math reward (task "math").

AIME 2024: the columns of HF `Maxwell-Jia/AIME_2024` (`ID`, `Problem`, `Solution`, `Answer`) or
the lowercase ones of `HuggingFaceH4/aime_2024` (`id`, `problem`, `solution`, `answer`); the answer
is an integer 0-999, as every AIME answer is (stored as an int or as digits).
MATH-500: the columns of HF `HuggingFaceH4/MATH-500` (`problem`, `solution`, `answer`, `subject`,
`level`, `unique_id`); the answer is LaTeX text ("\\frac{14}{3}"), checked by math-verify.
The prompt is the problem text; the checkpoint's template adds the answer format.
"""
from __future__ import annotations

from r1jax.data.benchmarks.rows import Row, finish, record
from r1jax.data.sources import iter_rows

AIME_2024, MATH_500 = "aime2024", "math500"
TASK = "math"


def _aime_answer(row: Row) -> str:
  column, v = row.value("Answer", "answer")
  if isinstance(v, float) and v.is_integer():
    v = int(v)
  if isinstance(v, str) and v.strip().isdigit():
    v = int(v.strip())
  if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 999:
    raise row.error(column, f"an AIME answer is an integer 0-999, got {v!r}")
  return str(v)


def load_aime(path: str, options=None) -> list[dict]:
  out = []
  for loc, raw in iter_rows(path):
    row = Row(loc, raw)
    out.append(record(row, benchmark=AIME_2024, ident=row.ident("ID", "id", required=False),
                      prompt=row.text("Problem", "problem"), answer=_aime_answer(row), task=TASK))
  return finish("AIME 2024", path, out)


def load_math500(path: str, options=None) -> list[dict]:
  out = []
  for loc, raw in iter_rows(path):
    row = Row(loc, raw)
    column, level = row.value("level", required=False)
    if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
      raise row.error(column, f"expected an int level (1-5), got {level!r}")
    extra = {"subject": row.text("subject", required=False), "level": level}
    out.append(record(row, benchmark=MATH_500, ident=row.ident("unique_id", required=False),
                      prompt=row.text("problem"), answer=row.text("answer"), task=TASK,
                      **{k: v for k, v in extra.items() if v is not None}))
  return finish("MATH-500", path, out)
