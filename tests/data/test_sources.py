"""Sources: JSONL / Parquet / ArrayRecord random access, field mapping, bad-input handling."""
import json
import logging
import os

import pytest

from r1jax.data.records import DataError, DatasetSpec, canonicalize, spec_from_config
from r1jax.data.sources import (ArrayRecordSource, ConcatSource, InMemorySource, JsonlSource,
                                ParquetSource, open_source, write_jsonl)


def good(i):
  return {"question": f"q{i}", "solution": str(i), "task": "math", "language": "en"}


SPEC = DatasetSpec(paths=("unused",), kind="rl",
                   fields={"prompt": "question", "answer": "solution"}, max_skip_fraction=0.5)


def bad_lines():
  """(line bytes, expected reason fragment) for every kind of bad input."""
  return [
      (b'{"question": "q", "solution": ', "malformed JSON"),
      (b'{"question": "q"}', "missing field 'solution'"),
      (b'{"question": 7, "solution": "1"}', "field 'question': expected a string, got int"),
      (b'{"question": "q", "solution": true}', "field 'solution'"),
      (b'{"question": "q", "solution": "1", "language": 3}', "field 'language'"),
      (b'{"question": "caf\xe9", "solution": "1"}', "invalid UTF-8"),
      (b'["not", "an", "object"]', "expected a JSON object, got list"),
  ]


def test_jsonl_skips_counts_and_logs_bad_lines(write_lines, caplog):
  lines, expected_bad = [], {}
  goods = []
  for i in range(20):
    lines.append(json.dumps(good(i)).encode())
    goods.append(good(i))
    if i < len(bad_lines()):
      raw, why = bad_lines()[i]
      lines.append(raw)
      expected_bad[len(lines)] = why
  lines.insert(3, b"   ")  # blank: neither a record nor an error
  expected_bad = {(k + 1 if k >= 4 else k): v for k, v in expected_bad.items()}
  path = write_lines("data.jsonl", lines)
  with caplog.at_level(logging.WARNING, logger="r1jax.data.sources"):
    src = JsonlSource(path, SPEC)
  st = src.stats
  assert (st.rows, st.kept, st.skipped, st.blank) == (27, 20, 7, 1)
  assert [loc for loc, _ in st.first_bad] == [f"{path}:{n}" for n in sorted(expected_bad)]
  for (loc, why), n in zip(st.first_bad, sorted(expected_bad)):
    assert expected_bad[n] in why, (loc, why)
    assert f"{path}:{n}" in caplog.text  # each skip is logged with file:line
  assert sum(st.reasons.values()) == 7
  # random access over the good lines only, in file order, with canonical names
  assert len(src) == 20
  for i in range(20):
    rec = src[i]
    assert rec["prompt"] == goods[i]["question"] and rec["answer"] == goods[i]["solution"]
    assert rec["task"] == "math" and rec["_loc"].startswith(path + ":")
  assert src[19]["_loc"] == f"{path}:{len(lines)}"


def test_skip_threshold_error_names_file_and_line(write_lines):
  lines = [json.dumps(good(i)).encode() for i in range(9)] + [b"{oops"]
  path = write_lines("mostly_ok.jsonl", lines)
  spec = DatasetSpec(paths=(path,), kind="rl", fields=SPEC.fields, max_skip_fraction=0.05)
  with pytest.raises(DataError) as e:
    open_source(spec)
  msg = str(e.value)
  assert f"{path}: 1 of 10 records are bad" in msg and f"{path}:10: malformed JSON" in msg
  # at the threshold it is fine
  ok = DatasetSpec(paths=(path,), kind="rl", fields=SPEC.fields, max_skip_fraction=0.1)
  assert len(open_source(ok)) == 9


def test_all_bad_or_empty_file_is_an_error(write_lines):
  path = write_lines("empty.jsonl", [b"", b"  "])
  with pytest.raises(DataError, match="no usable records"):
    JsonlSource(path, DatasetSpec(paths=(path,), max_skip_fraction=1.0))


def _rows_with_bad():
  rows = [good(i) for i in range(12)]
  rows[3] = {"question": None, "solution": "3"}         # null -> missing
  rows[7] = {"question": "q7", "solution": ""}          # empty answer
  return rows


def test_parquet_matches_jsonl(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  rows = _rows_with_bad()
  pq_path = os.path.join(tmp_path, "d.parquet")
  pq.write_table(pa.Table.from_pylist(rows), pq_path, row_group_size=5)
  jl_path = os.path.join(tmp_path, "d.jsonl")
  write_jsonl(rows, jl_path)
  a, b = ParquetSource(pq_path, SPEC), JsonlSource(jl_path, SPEC)
  assert len(a) == len(b) == 10
  strip = lambda r: {k: v for k, v in r.items() if k not in ("_loc", "id")}  # noqa: E731
  assert [strip(a[i]) for i in range(10)] == [strip(b[i]) for i in range(10)]
  assert [loc for loc, _ in a.stats.first_bad] == [f"{pq_path}:row 4", f"{pq_path}:row 8"]


def test_parquet_binary_column_with_invalid_utf8(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  table = pa.table({"question": pa.array([b"ok", b"\xff\xfe", b"fine"], pa.binary()),
                    "solution": ["1", "2", "3"]})
  path = os.path.join(tmp_path, "b.parquet")
  pq.write_table(table, path)
  src = ParquetSource(path, SPEC)
  assert [src[i]["prompt"] for i in range(len(src))] == ["ok", "fine"]
  assert src.stats.first_bad[0][0] == f"{path}:row 2"
  assert "invalid UTF-8" in src.stats.first_bad[0][1]


def test_arrayrecord_source(tmp_path):
  from array_record.python.array_record_module import ArrayRecordWriter

  path = os.path.join(tmp_path, "d.array_record")
  writer = ArrayRecordWriter(path, "group_size:1")
  rows = [good(i) for i in range(6)]
  for i, r in enumerate(rows):
    writer.write(json.dumps(r).encode())
    if i == 2:
      writer.write(b"\x80 not utf8")
  writer.close()
  src = open_source(DatasetSpec(paths=(path,), fields=SPEC.fields, max_skip_fraction=0.5))
  assert isinstance(src, ArrayRecordSource) and len(src) == 6
  assert [src[i]["prompt"] for i in range(6)] == [r["question"] for r in rows]
  assert src.stats.first_bad[0][0] == f"{path}:record 4"


def test_concat_and_auto_format(tmp_path):
  p1, p2 = os.path.join(tmp_path, "a.jsonl"), os.path.join(tmp_path, "b.jsonl")
  write_jsonl([good(i) for i in range(3)], p1)
  write_jsonl([good(i) for i in range(3, 8)], p2)
  spec = spec_from_config({"paths": [p1, p2], "kind": "rl", "fields": dict(SPEC.fields)})
  src = open_source(spec)
  assert isinstance(src, ConcatSource) and len(src) == 8
  assert [src[i]["prompt"] for i in range(8)] == [f"q{i}" for i in range(8)]
  with pytest.raises(IndexError):
    src[8]
  with pytest.raises(FileNotFoundError, match="does not exist"):
    open_source(DatasetSpec(paths=(os.path.join(tmp_path, "nope.jsonl"),)))
  with pytest.raises(ValueError, match="cannot tell the format"):
    DatasetSpec(paths=("x.bin",)).format_of("x.bin")


def test_spec_validation_names_the_key():
  with pytest.raises(ValueError, match="data.spec.kind"):
    DatasetSpec(paths=("a",), kind="dpo")
  with pytest.raises(ValueError, match="data.spec.fields"):
    DatasetSpec(paths=("a",), fields={"question": "q"})
  with pytest.raises(ValueError, match="data.spec.paths"):
    spec_from_config({"kind": "rl"})


def test_canonical_kinds_and_defaults():
  sft = DatasetSpec(paths=("m",), kind="sft", defaults={"task": "chat"})
  msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
  assert canonicalize({"messages": msgs}, sft) == {"messages": msgs, "task": "chat"}
  assert canonicalize({"text": "abc"}, sft) == {"text": "abc", "task": "chat"}
  assert canonicalize({"prompt": "p", "response": "r"}, sft)["response"] == "r"
  assert "no assistant turn" in canonicalize({"messages": msgs[:1]}, sft)
  assert "messages[1].role" in canonicalize(
      {"messages": [msgs[0], {"role": "robot", "content": "x"}]}, sft)
  pw = DatasetSpec(paths=("m",), kind="pointwise")
  assert canonicalize({"prompt": "p", "response": "r", "label": True}, pw)["label"] == 1
  assert "expected 0 or 1" in canonicalize({"prompt": "p", "response": "r", "label": 2}, pw)
  pref = DatasetSpec(paths=("m",), kind="preference")
  assert "missing field 'rejected'" in canonicalize({"prompt": "p", "chosen": "c"}, pref)
  rl = DatasetSpec(paths=("m",), kind="rl")
  assert canonicalize({"prompt": "p", "answer": {"target": 3}}, rl)["answer"] == {"target": 3}
  assert canonicalize({"prompt": "p", "answer": 3.5, "id": 9}, rl)["id"] == 9


def test_in_memory_source_validates_like_a_file():
  rows = [{"prompt": "a", "answer": "1"}, {"prompt": "b"}, {"prompt": "c", "answer": "3"}]
  src = InMemorySource(rows, DatasetSpec(paths=("gen",), max_skip_fraction=0.5), name="gen")
  assert len(src) == 2 and src.stats.first_bad == [("gen:2", "missing field 'answer'")]
  assert src[1]["id"] == "gen:3"
