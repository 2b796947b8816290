"""Random-access record sources over JSONL, Parquet, ArrayRecord and in-memory lists.

Every source *prescans* its file when built: each row is decoded and checked against the spec
(`records.canonicalize`), and only the positions of good rows are kept. So

- bad rows (malformed JSON, a missing or wrong-typed field, invalid UTF-8, a string with a lone
  surrogate, a NaN / Infinity answer, an empty SFT response) are skipped, counted and logged with
  file:line and the field *before* training starts: counts are exact and deterministic, and a
  bad row can never crash an epoch half way;
- random access stays valid (index i is the i-th good row), which Grain's shuffle and per-process
  slicing need;
- once a file's skip fraction exceeds `spec.max_skip_fraction`, building fails with a `DataError`
  naming the file, the counts and the first bad lines.

A file that cannot be read at all (a truncated or non-Parquet file) is a `DataError` naming it.

A record is a dict of canonical fields plus `_loc` ("file:line") and `id` (default: `_loc`).

`iter_rows` reads JSONL, Parquet or CSV rows as they are, with no schema and no skipping, for
readers with their own column layouts (the evaluation benchmarks, data/benchmarks/).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import re
import threading
from typing import Any, Callable, Iterable, Iterator, Sequence

import grain
import numpy as np

from r1jax import fs
from r1jax.data.records import DataError, DatasetSpec, canonicalize

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SourceStats:
  """What a prescan found in one file (or, summed, in several)."""

  name: str
  rows: int = 0        # non-blank rows read
  kept: int = 0
  blank: int = 0       # whitespace-only lines (not records; not counted as bad)
  skipped: int = 0
  reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  first_bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file:line, reason)

  @property
  def skip_fraction(self) -> float:
    return self.skipped / self.rows if self.rows else 0.0

  def as_dict(self) -> dict[str, Any]:
    return {"name": self.name, "rows": self.rows, "kept": self.kept, "blank": self.blank,
            "skipped": self.skipped, "skip_fraction": self.skip_fraction,
            "reasons": dict(self.reasons)}


class _Prescan:
  """Accumulates good/bad rows of one file, logs the bad ones, enforces the threshold."""

  def __init__(self, name: str, spec: DatasetSpec):
    self.spec, self.stats = spec, SourceStats(name)

  def bad(self, loc: str, reason: str) -> None:
    st = self.stats
    st.rows += 1
    st.skipped += 1
    st.reasons[re.split(r"[:(]", reason, maxsplit=1)[0].strip()] += 1
    if len(st.first_bad) < 1000:
      st.first_bad.append((loc, reason))
    if st.skipped <= self.spec.max_logged_skips:
      log.warning("%s: skipped bad record: %s", loc, reason)

  def good(self) -> None:
    self.stats.rows += 1
    self.stats.kept += 1

  def finish(self) -> SourceStats:
    st = self.stats
    if st.skipped > self.spec.max_logged_skips:
      log.warning("%s: %d bad records in total (%d logged above); reasons: %s", st.name,
                  st.skipped, self.spec.max_logged_skips, dict(st.reasons))
    if st.skip_fraction > self.spec.max_skip_fraction:
      shown = "\n".join(f"  {loc}: {why}" for loc, why in st.first_bad[:10])
      raise DataError(
          f"{st.name}: {st.skipped} of {st.rows} records are bad ({st.skip_fraction:.1%} > "
          f"max_skip_fraction {self.spec.max_skip_fraction:.1%}); first bad lines:\n{shown}")
    if st.kept == 0:
      raise DataError(f"{st.name}: no usable records ({st.rows} rows, {st.blank} blank)")
    return st


def _finalize(rec: dict[str, Any], loc: str) -> dict[str, Any]:
  rec["_loc"] = loc
  rec.setdefault("id", loc)
  return rec


class JsonlSource(grain.sources.RandomAccessDataSource):
  """JSON Lines with random access by byte offset: `os.pread` on local files (thread-safe reads),
  a seek + read under a lock on object stores (`gs://…`)."""

  def __init__(self, path: str, spec: DatasetSpec):
    self.path, self.spec = os.fspath(path), spec
    offsets, lengths, lines = [], [], []
    scan = _Prescan(self.path, spec)
    with fs.open_file(self.path, "rb") as f:
      offset = 0
      for lineno, raw in enumerate(f, start=1):
        size = len(raw)
        if raw.strip():
          parsed = _parse_json_line(raw)
          rec = parsed if isinstance(parsed, str) else canonicalize(parsed, spec)
          if isinstance(rec, str):
            scan.bad(f"{self.path}:{lineno}", rec)
          else:
            scan.good()
            offsets.append(offset)
            lengths.append(size)
            lines.append(lineno)
        else:
          scan.stats.blank += 1
        offset += size
    self.stats = scan.finish()
    self._offsets = np.asarray(offsets, np.int64)
    self._lengths = np.asarray(lengths, np.int64)
    self._lines = np.asarray(lines, np.int64)
    self._fd: int | None = None
    self._remote = None  # (file object, lock) for a URL, opened on first read

  def _read(self, offset: int, size: int) -> bytes:
    if not fs.is_remote(self.path):
      if self._fd is None:
        self._fd = os.open(self.path, os.O_RDONLY)
      return os.pread(self._fd, size, offset)
    if self._remote is None:
      self._remote = (fs.open_file(self.path, "rb"), threading.Lock())
    f, lock = self._remote
    with lock:
      f.seek(offset)
      return f.read(size)

  def __len__(self) -> int:
    return len(self._offsets)

  def __getitem__(self, index: int) -> dict[str, Any]:
    raw = self._read(int(self._offsets[index]), int(self._lengths[index]))
    loc = f"{self.path}:{int(self._lines[index])}"
    parsed = _parse_json_line(raw)
    rec = parsed if isinstance(parsed, str) else canonicalize(parsed, self.spec)
    if isinstance(rec, str):  # only if the file changed after the prescan
      raise DataError(f"{loc}: record changed since the prescan: {rec}")
    return _finalize(rec, loc)

  def __getstate__(self):  # picklable for multiprocess workers: reopen the file there
    state = dict(self.__dict__)
    state["_fd"] = state["_remote"] = None
    return state

  def __del__(self):
    if getattr(self, "_fd", None) is not None:
      try:
        os.close(self._fd)
      except Exception:  # interpreter shutdown may have torn down `os` already
        pass

  def __repr__(self) -> str:
    return f"JsonlSource({self.path!r}, {len(self)} records)"


def _parse_json_line(raw: bytes) -> Any:
  """bytes -> parsed JSON, or a reason string."""
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    return f"invalid UTF-8 ({e.reason} at byte {e.start})"
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    return f"malformed JSON: {e.msg} (column {e.colno})"


class _ValidatedRecords(grain.sources.RandomAccessDataSource):
  """A source whose rows are all canonicalised up front and held in memory."""

  def _validate(self, name: str, spec: DatasetSpec, rows) -> None:
    """rows: (location, raw record) pairs; bad ones are counted with their location."""
    scan = _Prescan(name, spec)
    self._records: list[dict[str, Any]] = []
    for loc, raw in rows:
      rec = canonicalize(raw, spec)
      if isinstance(rec, str):
        scan.bad(loc, rec)
      else:
        scan.good()
        self._records.append(_finalize(rec, loc))
    self.stats = scan.finish()

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return dict(self._records[index])


class ParquetSource(_ValidatedRecords):
  """A Parquet file, read once into columns (the canonical fields only); 'line' = row number."""

  def __init__(self, path: str, spec: DatasetSpec):
    self.path, self.spec = os.fspath(path), spec
    wanted = {spec.source_field(n) for n in
              ("prompt", "answer", "response", "messages", "text", "chosen", "rejected", "label",
               "task", "language", "id")}
    self._validate(self.path, spec, _parquet_rows(self.path, wanted))

  def __repr__(self) -> str:
    return f"ParquetSource({self.path!r}, {len(self)} records)"


def _parquet_rows(path: str, wanted: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
  """("file:row N", {column: value}) per row of a Parquet file, null cells left out; only the
  `wanted` columns (all when None). An unreadable file is a DataError naming it."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  try:  # a truncated or non-Parquet file: pyarrow's message alone does not name it
    schema = pq.read_schema(path)
    keep = None if wanted is None else set(wanted)
    columns = [c for c in schema.names if keep is None or c in keep]
    table = pq.read_table(path, columns=columns)
    data = {c: table.column(c).to_pylist() for c in columns}
  except (pa.ArrowException, OSError) as e:
    raise DataError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from e
  for row in range(table.num_rows):
    yield f"{path}:row {row + 1}", {c: data[c][row] for c in columns if data[c][row] is not None}


ROW_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
               ".csv": "csv"}


def iter_rows(path: str) -> Iterator[tuple[str, dict[str, Any]]]:
  """("file:line", raw row) for every row of a JSONL, Parquet or CSV file, in file order, with no
  schema: for readers that must see every row (a benchmark is not a benchmark with rows skipped),
  so a row that is not a JSON object is a DataError naming file:line, never a skip."""
  path = os.fspath(path)
  fmt = next((f for suffix, f in ROW_FORMATS.items() if path.lower().endswith(suffix)), None)
  if fmt is None:
    raise DataError(f"{path}: cannot tell the format from the name (expected one of {sorted(ROW_FORMATS)})")
  if not fs.exists(path):
    raise FileNotFoundError(f"{path} does not exist")
  if fmt == "parquet":
    yield from _parquet_rows(path)
  elif fmt == "csv":
    yield from _csv_rows(path)
  else:
    with fs.open_file(path, "rb") as f:
      for lineno, raw in enumerate(f, start=1):
        if not raw.strip():
          continue
        parsed = _parse_json_line(raw)
        if isinstance(parsed, str):
          raise DataError(f"{path}:{lineno}: {parsed}")
        if not isinstance(parsed, dict):
          raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(parsed).__name__}")
        yield f"{path}:{lineno}", parsed


def _csv_rows(path: str) -> Iterator[tuple[str, dict[str, Any]]]:
  """CSV with a header row (quoted fields may span lines; the location is the record's first
  line); empty cells are left out, as Parquet nulls are."""
  import csv
  import io

  try:
    text = fs.read_bytes(path).decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: invalid UTF-8 ({e.reason} at byte {e.start})") from e
  reader = csv.reader(io.StringIO(text, newline=""))
  try:
    header = next(reader, None)
    if header is None:
      raise DataError(f"{path}: empty CSV file (no header row)")
    start = reader.line_num + 1
    for cells in reader:
      if any(c.strip() for c in cells):
        if len(cells) != len(header):
          raise DataError(f"{path}:{start}: {len(cells)} fields, the header has {len(header)}")
        yield f"{path}:{start}", {h: c for h, c in zip(header, cells) if c != ""}
      start = reader.line_num + 1
  except csv.Error as e:
    raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from e


class ArrayRecordSource(grain.sources.RandomAccessDataSource):
  """ArrayRecord of UTF-8 JSON objects (one per record); 'line' = record number."""

  def __init__(self, path: str, spec: DatasetSpec):
    self.path, self.spec = os.fspath(path), spec
    self._src = grain.sources.ArrayRecordDataSource([self.path])
    scan = _Prescan(self.path, spec)
    keep = []
    for i in range(len(self._src)):
      parsed = _parse_json_line(self._src[i])
      rec = parsed if isinstance(parsed, str) else canonicalize(parsed, spec)
      if isinstance(rec, str):
        scan.bad(f"{self.path}:record {i + 1}", rec)
      else:
        scan.good()
        keep.append(i)
    self.stats = scan.finish()
    self._index = np.asarray(keep, np.int64)

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, index: int) -> dict[str, Any]:
    i = int(self._index[index])
    loc = f"{self.path}:record {i + 1}"
    parsed = _parse_json_line(self._src[i])
    rec = parsed if isinstance(parsed, str) else canonicalize(parsed, self.spec)
    if isinstance(rec, str):
      raise DataError(f"{loc}: record changed since the prescan: {rec}")
    return _finalize(rec, loc)

  def __repr__(self) -> str:
    return f"ArrayRecordSource({self.path!r}, {len(self)} records)"


class InMemorySource(_ValidatedRecords):
  """A list of dicts (e.g. generated offline tasks), validated like a file; 'line' = list index."""

  def __init__(self, rows: Sequence[Any], spec: DatasetSpec | None = None, name: str = "memory"):
    self.spec = spec or DatasetSpec(paths=(name,), kind="rl")
    self.name = name
    self._validate(name, self.spec, ((f"{name}:{i + 1}", row) for i, row in enumerate(rows)))

  def __repr__(self) -> str:
    return f"InMemorySource({self.name!r}, {len(self)} records)"


class ConcatSource(grain.sources.RandomAccessDataSource):
  """Several sources back to back (the files of one spec)."""

  def __init__(self, sources: Sequence[grain.sources.RandomAccessDataSource]):
    if not sources:
      raise ValueError("ConcatSource: no sources")
    self.sources = list(sources)
    self._starts = np.cumsum([0] + [len(s) for s in self.sources])
    self.stats = [s.stats for s in self.sources]

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __getitem__(self, index: int) -> dict[str, Any]:
    if not 0 <= index < len(self):
      raise IndexError(index)
    k = int(np.searchsorted(self._starts, index, side="right") - 1)
    return self.sources[k][index - int(self._starts[k])]

  def __repr__(self) -> str:
    return f"ConcatSource({self.sources!r})"


_OPENERS: dict[str, Callable[[str, DatasetSpec], grain.sources.RandomAccessDataSource]] = {
    "jsonl": JsonlSource, "parquet": ParquetSource, "arrayrecord": ArrayRecordSource}


def open_source(spec: DatasetSpec) -> grain.sources.RandomAccessDataSource:
  """All files of a spec as one random-access source (prescanned; may raise DataError)."""
  sources = []
  for path in spec.paths:
    if not fs.exists(path):
      raise FileNotFoundError(f"data.spec.paths: {path} does not exist")
    sources.append(_OPENERS[spec.format_of(path)](path, spec))
  return sources[0] if len(sources) == 1 else ConcatSource(sources)


def write_jsonl(rows: Iterable[Any], path: str | os.PathLike) -> int:
  """Writes rows as JSON Lines (UTF-8, no ASCII escaping), whole or not at all (`fs.writing`);
  returns the number written."""
  n = 0
  with fs.writing(path, "w") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False))
      f.write("\n")
      n += 1
  return n
