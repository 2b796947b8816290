"""LiveCodeBench (code generation) from a local file, graded in the code sandbox (task "code").

Columns of HF `livecodebench/code_generation_lite`: `question_title`, `question_content`,
`platform`, `question_id`, `contest_date`, `starter_code`, `difficulty`, `public_test_cases`,
`private_test_cases`, `metadata`. A test case is {"input", "output", "testtype"}: "stdin" (the
program reads `input`, must print `output`) or "functional" (LeetCode: `input` holds one JSON
argument per line, `output` the JSON return value of `Solution().<metadata.func_name>`).

Test-case columns hold a JSON list (a string, or already a list in JSONL), or, as the release
stores most `private_test_cases`, base64 of zlib of a *pickled JSON string*. Nothing is ever
unpickled: the pickle's opcodes are read with `pickletools.genops` (a parser that builds no
object) and only a stream holding one string and nothing else (no globals, no calls) is accepted;
that string must then be JSON of a list of test dicts. Anything else is an error naming the row.

The record's answer is the code reward's test spec: {"tests": [{"stdin", "stdout"}, ...]} or
{"fn_name", "prelude", "tests": [{"args", "expected"}, ...]}, public tests first. Functional
solutions run after `FUNCTIONAL_PRELUDE` (typing names for the starter code's annotations, common
modules), as LeetCode's environment provides them. `date_from <= contest_date < date_to`
(ISO dates; empty = open) selects the paper's window (2024-08 to 2025-01).
"""
from __future__ import annotations

import base64
import binascii
import datetime
import json
import pickletools
import zlib
from typing import Any

from r1jax.data.benchmarks.rows import Row, finish, record
from r1jax.data.records import DataError
from r1jax.data.sources import iter_rows

LIVECODEBENCH = "livecodebench"
TASK = "code"
TEST_TYPES = ("stdin", "functional")
MAX_DECOMPRESSED_BYTES = 1 << 30  # one problem's tests; a zlib bomb stops here
FUNCTIONAL_PRELUDE = ("from typing import *\n"
                      "import bisect, collections, functools, heapq, itertools, math, re, string\n"
                      "from collections import Counter, defaultdict, deque\n"
                      "from functools import lru_cache\n")

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"}
_FRAMING_OPS = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP"}


def pickled_string(data: bytes) -> str:
  """The one string a pickle stream holds, read from its opcodes (never unpickled); ValueError
  for any stream that does more than push one string (globals, calls, containers, ...)."""
  found: list[str] = []
  ops = pickletools.genops(data)
  while True:
    try:
      op, arg, pos = next(ops)
    except StopIteration:
      break
    except ValueError as e:  # truncated, or bytes that are no opcode
      raise ValueError(f"not a pickle stream ({e})") from None
    if op.name in _STRING_OPS:
      found.append(arg)
    elif op.name not in _FRAMING_OPS:
      raise ValueError(f"pickle opcode {op.name} at byte {pos}: only a pickled string is accepted "
                       "(nothing is unpickled)")
  if len(found) != 1:
    raise ValueError(f"the pickle holds {len(found)} strings, expected exactly one")
  return found[0]


def _decompress(text: str) -> str:
  """base64 -> zlib -> pickled str (the release's compressed form) -> the JSON text."""
  try:
    packed = base64.b64decode(text, validate=True)
  except (binascii.Error, ValueError):
    raise ValueError("neither a JSON list nor base64 (the compressed form)") from None
  inflater = zlib.decompressobj()
  try:
    data = inflater.decompress(packed, MAX_DECOMPRESSED_BYTES)
  except zlib.error as e:
    raise ValueError(f"base64 but not zlib data ({e})") from None
  if inflater.unconsumed_tail:
    raise ValueError(f"decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")
  return pickled_string(data)


def decode_test_cases(value: Any) -> list[dict]:
  """A test-case column's list of {"input", "output", "testtype"} (see the module docstring);
  ValueError saying what is wrong."""
  if isinstance(value, (bytes, bytearray)):
    value = bytes(value).decode("utf-8")
  if isinstance(value, str):
    text = value.strip()
    if not text:
      return []
    if not text.startswith("["):
      text = _decompress(text)
    try:
      value = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"not valid JSON ({e.msg} at character {e.pos})") from None
  if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
    raise ValueError(f"expected a list of test dicts, got {type(value).__name__}")
  for i, t in enumerate(value):
    if t.get("testtype") not in TEST_TYPES:
      raise ValueError(f"test {i}: testtype must be one of {TEST_TYPES}, got {t.get('testtype')!r}")
    for key in ("input", "output"):
      if not isinstance(t.get(key), str):
        raise ValueError(f"test {i}: {key!r} must be a string, got {type(t.get(key)).__name__}")
  return value


def _call_test(t: dict, i: int) -> dict:
  try:
    args = [json.loads(line) for line in t["input"].split("\n") if line.strip()]
  except json.JSONDecodeError as e:
    raise ValueError(f"test {i}: a functional input line is not JSON ({e.msg})") from None
  try:
    expected = json.loads(t["output"])
  except json.JSONDecodeError as e:
    raise ValueError(f"test {i}: a functional output is not JSON ({e.msg})") from None
  return {"args": args, "expected": expected}


def _contest_date(row: Row) -> datetime.date | None:
  column, v = row.value("contest_date", required=False)
  if v is None or isinstance(v, datetime.date):
    return v.date() if isinstance(v, datetime.datetime) else v
  try:
    return datetime.datetime.fromisoformat(str(v).strip().replace("Z", "+00:00")).date()
  except ValueError:
    raise row.error(column, f"not an ISO date, got {v!r}") from None


def date_bound(value: str, key: str) -> datetime.date | None:
  if not value:
    return None
  try:
    return datetime.date.fromisoformat(value)
  except ValueError:
    raise ValueError(f"{key}: {value!r} is not an ISO date (YYYY-MM-DD)") from None


def _metadata(row: Row) -> dict:
  column, v = row.value("metadata", required=False)
  if isinstance(v, str):
    try:
      v = json.loads(v) if v.strip() else {}
    except json.JSONDecodeError as e:
      raise row.error(column, f"not valid JSON ({e.msg})") from None
  if v is None:
    return {}
  if not isinstance(v, dict):
    raise row.error(column, f"expected a JSON object, got {type(v).__name__}")
  return v


def _tests(row: Row) -> dict:
  """The code reward's test spec of one row (public tests, then private ones)."""
  cases = []
  for column in ("public_test_cases", "private_test_cases"):
    _, v = row.value(column, required=column == "public_test_cases")
    try:
      cases += decode_test_cases(v) if v is not None else []
    except ValueError as e:
      raise row.error(column, str(e)) from None
  if not cases:
    raise row.error("public_test_cases", "no test cases in this row (public and private are empty)")
  kinds = sorted({t["testtype"] for t in cases})
  if len(kinds) > 1:
    raise row.error("public_test_cases", f"mixes test types {kinds}; a problem is stdin or functional")
  if kinds == ["stdin"]:
    return {"tests": [{"stdin": t["input"], "stdout": t["output"]} for t in cases]}
  fn_name = _metadata(row).get("func_name")
  if not isinstance(fn_name, str) or not fn_name.isidentifier():
    raise row.error("metadata", f"functional tests need a func_name identifier, got {fn_name!r}")
  try:
    tests = [_call_test(t, i) for i, t in enumerate(cases)]
  except ValueError as e:
    raise row.error("public_test_cases / private_test_cases", str(e)) from None
  return {"fn_name": fn_name, "prelude": FUNCTIONAL_PRELUDE, "tests": tests}


def code_prompt(content: str, starter_code: str, fn_name: str | None) -> str:
  """The problem, then how the solution is run (a stdin program, or the starter code's method)."""
  if starter_code:
    how = (f"Complete this starter code (Python 3, standard library only); the tests call "
           f"`{fn_name}` on a `Solution()` instance with the arguments, so do not read input or "
           f"print:\n```python\n{starter_code}\n```")
  else:
    how = ("Write a Python 3 program (standard library only) that reads the input from standard "
           "input and writes the answer to standard output.")
  return f"{content}\n\n{how}\n\nGive your solution as a single ```python code block."


def load_livecodebench(path: str, options=None) -> list[dict]:
  low = date_bound(getattr(options, "date_from", ""), "eval.livecodebench.date_from")
  high = date_bound(getattr(options, "date_to", ""), "eval.livecodebench.date_to")
  out, outside = [], 0
  for loc, raw in iter_rows(path):
    row = Row(loc, raw)
    date = _contest_date(row)
    if low is not None or high is not None:
      if date is None:
        raise row.error("contest_date", "missing, and a date window is set")
      if (low is not None and date < low) or (high is not None and date >= high):
        outside += 1
        continue
    tests = _tests(row)
    starter = row.text("starter_code", required=False, allow_empty=True) or ""
    extra = {"question_title": row.text("question_title"), "platform": row.text("platform", required=False),
             "difficulty": row.text("difficulty", required=False),
             "contest_date": date.isoformat() if date is not None else None}
    out.append(record(row, benchmark=LIVECODEBENCH, ident=row.ident("question_id"),
                      prompt=code_prompt(row.text("question_content"), starter, tests.get("fn_name")),
                      answer=tests, task=TASK, **{k: v for k, v in extra.items() if v is not None}))
  if not out and outside:
    raise DataError(f"{path}: all {outside} problems fall outside the contest_date window "
                    f"[{low or '...'}, {high or '...'})")
  return finish("LiveCodeBench", path, out)
