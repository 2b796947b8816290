"""One benchmark row with the checks every loader shares: columns looked up by their public names,
values checked, and every problem an error naming file:line (or parquet row) and the column.

A benchmark is read whole or not at all: a skipped problem would change what the score means, so
bad rows raise (`DataError`) instead of being counted and skipped as training data is."""
from __future__ import annotations

from typing import Any, Sequence

from r1jax.data.records import DataError

_MISSING = object()


class Row:
  """`loc` ("file:line" or "file:row N") and the raw {column: value} of one row."""

  def __init__(self, loc: str, raw: dict[str, Any]):
    self.loc, self.raw = loc, raw

  def error(self, column: str, message: str) -> DataError:
    return DataError(f"{self.loc}: column {column!r}: {message}")

  def value(self, *names: str, required: bool = True) -> tuple[str, Any]:
    """(column, value) of the first of `names` present (the public layouts differ in case);
    (names[0], None) when none is and the column is optional."""
    for name in names:
      v = self.raw.get(name, _MISSING)
      if v is not _MISSING and v is not None:
        return name, v
    if required:
      which = repr(names[0]) if len(names) == 1 else f"one of {list(names)}"
      raise DataError(f"{self.loc}: missing column {which} (columns: {sorted(self.raw)})")
    return names[0], None

  def text(self, *names: str, required: bool = True, allow_empty: bool = False) -> str | None:
    """A string column (stripped of surrounding whitespace), non-blank unless `allow_empty`."""
    column, v = self.value(*names, required=required)
    if v is None:
      return None
    if isinstance(v, (bytes, bytearray)):
      try:
        v = bytes(v).decode("utf-8")
      except UnicodeDecodeError as e:
        raise self.error(column, f"invalid UTF-8 ({e.reason} at byte {e.start})") from None
    if not isinstance(v, str):
      raise self.error(column, f"expected a string, got {type(v).__name__} {v!r:.60}")
    try:
      v.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate from a JSON escape: the tokenizer would crash
      raise self.error(column, f"not valid text (lone surrogate at character {e.start})") from None
    if not allow_empty and not v.strip():
      raise self.error(column, "empty")
    return v.strip()

  def ident(self, *names: str, required: bool = True) -> str | None:
    """An id column: a non-blank string or an int."""
    column, v = self.value(*names, required=required)
    if v is None:
      return None
    if isinstance(v, int) and not isinstance(v, bool):
      return str(v)
    return self.text(column)


def finish(name: str, path: str, records: Sequence[dict]) -> list[dict]:
  """The loaded records, after the whole-file checks: not empty, no id twice."""
  if not records:
    raise DataError(f"{path}: no {name} problems in the file")
  seen: dict[str, str] = {}
  for r in records:
    if r["id"] in seen:
      raise DataError(f"{r['_loc']}: {name} problem id {r['id']!r} repeats {seen[r['id']]}")
    seen[r["id"]] = r["_loc"]
  return list(records)


def record(row: Row, *, benchmark: str, ident: str | None, prompt: str, answer: Any, task: str,
           **extra: Any) -> dict:
  """The record shape evaluation reads (the offline tasks' shape): prompt, answer, task, id,
  `_loc`, plus `benchmark` and the benchmark's own fields."""
  return {"prompt": prompt, "answer": answer, "task": task,
          "id": f"{benchmark}/{ident if ident is not None else row.loc}", "_loc": row.loc,
          "benchmark": benchmark, **extra}
