"""Sources: JSONL / Parquet / ArrayRecord random access, field mapping, bad-input handling."""
import json
import logging
import os
import re

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


def _only_bad(src):
  return {loc: why for loc, why in src.stats.first_bad}


def test_nan_and_infinity_answers_are_rejected_with_file_line(write_lines, tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  lines = [json.dumps(good(i)).encode() for i in range(10)]
  lines[2] = b'{"question": "q", "solution": NaN}'  # what json.dumps(float("nan")) writes
  lines[5] = b'{"question": "q", "solution": Infinity}'
  lines[7] = b'{"question": "q", "solution": [1, -Infinity]}'
  path = write_lines("nan.jsonl", lines)
  bad = _only_bad(JsonlSource(path, SPEC))
  assert sorted(bad) == [f"{path}:3", f"{path}:6", f"{path}:8"], bad
  assert "field 'solution': NaN / Infinity is not an answer" in bad[f"{path}:3"]
  assert "field 'solution[1]': NaN / Infinity" in bad[f"{path}:8"]
  pq_path = os.path.join(tmp_path, "nan.parquet")
  pq.write_table(pa.table({"question": ["a", "b", "c"], "solution": [1.5, float("nan"), 2.0]}), pq_path)
  src = ParquetSource(pq_path, SPEC)
  assert [src[i]["answer"] for i in range(len(src))] == [1.5, 2.0]
  assert list(_only_bad(src)) == [f"{pq_path}:row 2"]


def test_lone_surrogates_are_rejected_up_front_with_file_line_and_field(write_lines):
  """JSON's "\\ud800" escape decodes to a str that cannot be encoded: it used to pass the scan
  and crash the tokenizer mid-epoch with no file:line."""
  lines = [json.dumps(good(i)).encode() for i in range(10)]
  lines[1] = b'{"question": "caf\\ud800", "solution": "1"}'
  lines[4] = b'{"question": "q", "solution": ["1", "\\udfff"]}'
  lines[6] = b'{"question": "q", "solution": "1", "language": "e\\ud83dn"}'
  path = write_lines("surrogates.jsonl", lines)
  bad = _only_bad(JsonlSource(path, SPEC))
  assert sorted(bad) == [f"{path}:2", f"{path}:5", f"{path}:7"], bad
  assert "field 'question': not valid text, a lone surrogate U+D800 at character 3" in bad[f"{path}:2"]
  assert "field 'solution[1]'" in bad[f"{path}:5"] and "field 'language'" in bad[f"{path}:7"]
  # Paired surrogates in JSON are one valid character.
  assert canonicalize(json.loads('{"prompt": "\\ud83d\\ude42", "answer": "1"}'),
                      DatasetSpec(paths=("m",)))["prompt"] == "\U0001f642"
  sft = DatasetSpec(paths=("m",), kind="sft")
  msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo\ud800"}]
  assert "field 'messages[1].content': not valid text" in canonicalize({"messages": msgs}, sft)
  src = InMemorySource([{"prompt": "a", "answer": "1"}, {"prompt": "b\udc80", "answer": "2"}],
                       DatasetSpec(paths=("gen",), max_skip_fraction=0.5), name="gen")
  assert len(src) == 1 and list(_only_bad(src)) == ["gen:2"]


def test_blank_sft_responses_are_rejected():
  sft = DatasetSpec(paths=("m",), kind="sft")
  assert "field 'response': empty" in canonicalize({"prompt": "p", "response": ""}, sft)
  assert "field 'response': empty" in canonicalize({"prompt": "p", "response": " \n\t"}, sft)
  assert "field 'text': empty" in canonicalize({"text": "  "}, sft)
  msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]
  assert "field 'messages[1].content': empty assistant turn" in canonicalize({"messages": msgs}, sft)
  mapped = DatasetSpec(paths=("m",), kind="sft", fields={"response": "completion"})
  assert "field 'completion': empty" in canonicalize({"prompt": "p", "completion": ""}, mapped)
  assert canonicalize({"prompt": "p", "response": "r"}, sft)["response"] == "r"


def test_blank_sft_response_in_a_file_names_file_and_line(write_lines):
  rows = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(5)]
  rows[3]["response"] = ""
  path = write_lines("sft.jsonl", [json.dumps(r).encode() for r in rows])
  with pytest.raises(DataError, match=re.escape(f"{path}:4: field 'response': empty")):
    JsonlSource(path, DatasetSpec(paths=(path,), kind="sft", max_skip_fraction=0.0))


def test_unreadable_parquet_names_the_file(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  whole = os.path.join(tmp_path, "whole.parquet")
  pq.write_table(pa.table({"question": [f"q{i}" for i in range(100)], "solution": ["1"] * 100}), whole)
  data = open(whole, "rb").read()
  truncated = os.path.join(tmp_path, "truncated.parquet")
  with open(truncated, "wb") as f:
    f.write(data[: len(data) // 2])
  not_parquet = os.path.join(tmp_path, "notes.parquet")
  with open(not_parquet, "w") as f:
    f.write('{"question": "q", "solution": "1"}\n')
  for path in (truncated, not_parquet):
    with pytest.raises(DataError, match="^" + re.escape(f"{path}: not a readable Parquet file")):
      open_source(DatasetSpec(paths=(path,), kind="rl", fields=SPEC.fields))
