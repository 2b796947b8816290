"""The paper's benchmarks from local files (data/benchmarks/): each loader on its public column
layout, and a bad row of each an error naming file:line (or parquet row) and the column."""
import base64
import collections
import json
import os
import pickle
import zlib

import pytest

from r1jax.data.benchmarks import BENCHMARKS, LoadOptions, load_benchmark
from r1jax.data.benchmarks.gpqa import LETTERS
from r1jax.data.benchmarks.livecodebench import FUNCTIONAL_PRELUDE, decode_test_cases, pickled_string
from r1jax.data.records import DataError
from r1jax.data.sources import iter_rows
from tests.data.benchmark_files import aime_rows, compress_tests, gpqa_rows, lcb_rows, math500_rows, write

WINDOW = LoadOptions(date_from="2024-08-01", date_to="2025-02-01")


def _raises(fn, *fragments):
  with pytest.raises(DataError) as e:
    fn()
  for fragment in fragments:
    assert fragment in str(e.value), (fragment, str(e.value))
  return str(e.value)


def test_aime_both_public_layouts_and_a_bad_answer(tmp_path):
  rows = aime_rows()
  parquet = write(tmp_path / "aime.parquet", rows)
  recs = load_benchmark("aime2024", parquet)
  assert [(r["prompt"], r["answer"], r["task"], r["id"]) for r in recs] == [
      (row["Problem"], str(row["Answer"]), "math", f"aime2024/{row['ID']}") for row in rows]
  assert recs[1]["_loc"] == f"{parquet}:row 2" and recs[0]["benchmark"] == "aime2024"
  # HuggingFaceH4/aime_2024: lowercase columns, int ids, answers as digit strings.
  lower = [{"id": 60 + i, "problem": r["Problem"], "solution": r["Solution"], "answer": f"{r['Answer']:03d}"}
           for i, r in enumerate(rows)]
  jsonl = write(tmp_path / "aime.jsonl", lower)
  assert [(r["answer"], r["id"]) for r in load_benchmark("aime2024", jsonl)] == [("24", "aime2024/60"),
                                                                                ("6", "aime2024/61")]
  write(tmp_path / "bad.jsonl", lower[:1] + [{**lower[1], "answer": "3/4"}])
  _raises(lambda: load_benchmark("aime2024", str(tmp_path / "bad.jsonl")), "bad.jsonl:2: column 'answer'",
          "integer 0-999")
  write(tmp_path / "nocol.parquet", [{"ID": "x", "Answer": 3}])
  _raises(lambda: load_benchmark("aime2024", str(tmp_path / "nocol.parquet")), "nocol.parquet:row 1",
          "missing column one of ['Problem', 'problem']")


def test_math500_records_and_bad_rows(tmp_path):
  path = write(tmp_path / "m.jsonl", math500_rows())
  recs = load_benchmark("math500", path)
  assert [(r["answer"], r["id"], r["subject"], r["level"]) for r in recs] == [
      ("\\frac{1}{2}", "math500/test/prealgebra/1.json", "Prealgebra", 1), ("3", "math500/test/algebra/7.json",
                                                                             "Algebra", 2)]
  assert all(r["task"] == "math" and r["prompt"].startswith("[math-") for r in recs)
  rows = math500_rows()
  write(tmp_path / "empty.jsonl", [rows[0], {**rows[1], "answer": "  "}])
  _raises(lambda: load_benchmark("math500", str(tmp_path / "empty.jsonl")), "empty.jsonl:2: column 'answer': empty")
  write(tmp_path / "dup.jsonl", [rows[0], rows[0]])
  _raises(lambda: load_benchmark("math500", str(tmp_path / "dup.jsonl")), "dup.jsonl:2",
          "'math500/test/prealgebra/1.json' repeats", "dup.jsonl:1")
  write(tmp_path / "level.parquet", [{**rows[0], "level": "Level 1"}])
  _raises(lambda: load_benchmark("math500", str(tmp_path / "level.parquet")), "level.parquet:row 1: column 'level'")


def test_gpqa_shuffles_deterministically_and_keeps_the_correct_letter(tmp_path):
  rows = gpqa_rows(40)
  path = write(tmp_path / "gpqa.parquet", rows)
  recs = load_benchmark("gpqa_diamond", path, LoadOptions(seed=7))
  assert recs == load_benchmark("gpqa_diamond", path, LoadOptions(seed=7))  # repeatable
  for row, r in zip(rows, recs):
    assert r["task"] == "multiple_choice" and r["id"] == f"gpqa_diamond/{row['Record ID']}"
    assert r["choices"][LETTERS.index(r["answer"])] == row["Correct Answer"]
    assert sorted(r["choices"]) == sorted(row[c] for c in ("Correct Answer", "Incorrect Answer 1",
                                                          "Incorrect Answer 2", "Incorrect Answer 3"))
    # The prompt lists the options in that order, one a line: "A) ...".
    assert "\n".join(f"{letter}) {text}" for letter, text in zip(LETTERS, r["choices"])) in r["prompt"]
    assert r["prompt"].startswith(row["Question"])
  counts = collections.Counter(r["answer"] for r in recs)
  assert set(counts) == set(LETTERS) and max(counts.values()) < 20  # spread over the letters
  other = load_benchmark("gpqa_diamond", path, LoadOptions(seed=8))
  assert [r["choices"] for r in other] != [r["choices"] for r in recs]  # the seed decides the order
  # The order depends on the Record ID, not on the row's position in the file.
  backwards = load_benchmark("gpqa_diamond", write(tmp_path / "rev.parquet", rows[::-1]), LoadOptions(seed=7))
  assert backwards[::-1] == [{**r, "_loc": b["_loc"]} for r, b in zip(recs, backwards[::-1])]


def test_gpqa_csv_with_a_multiline_question_and_bad_rows(tmp_path):
  rows = gpqa_rows(3)
  rows[0]["Question"] = "Line one\nline two"
  path = write(tmp_path / "gpqa_diamond.csv", rows)
  recs = load_benchmark("gpqa_diamond", path)
  assert recs[0]["prompt"].startswith("Line one\nline two\n\nA) ")
  assert [r["_loc"] for r in recs] == [f"{path}:2", f"{path}:4", f"{path}:5"]  # the record's first line
  rows[2]["Incorrect Answer 2"] = rows[2]["Correct Answer"]
  bad = write(tmp_path / "dup.csv", rows)
  _raises(lambda: load_benchmark("gpqa_diamond", bad), "dup.csv:5: column 'Incorrect Answer 2'",
          "same text as column 'Correct Answer'")
  del rows[1]["Record ID"]
  write(tmp_path / "noid.jsonl", rows[:2])
  _raises(lambda: load_benchmark("gpqa_diamond", str(tmp_path / "noid.jsonl")), "noid.jsonl:2",
          "missing column 'Record ID'")


def test_livecodebench_tests_both_forms_and_the_date_window(tmp_path):
  path = write(tmp_path / "lcb.jsonl", lcb_rows())
  every = load_benchmark("livecodebench", path)
  assert [r["id"] for r in every] == ["livecodebench/abc001_a", "livecodebench/3001", "livecodebench/1A"]
  recs = load_benchmark("livecodebench", path, WINDOW)
  assert [r["id"] for r in recs] == ["livecodebench/abc001_a", "livecodebench/3001"]
  stdin, call = recs
  assert stdin["task"] == call["task"] == "code"
  assert stdin["answer"] == {"tests": [{"stdin": "3 0\n", "stdout": "3\n"}, {"stdin": "2 5\n", "stdout": "7\n"},
                                       {"stdin": "10 -4\n", "stdout": "6\n"}]}
  # Public then the (compressed) private tests: one JSON argument a line, a JSON return value.
  assert call["answer"] == {"fn_name": "maxOf", "prelude": FUNCTIONAL_PRELUDE, "tests": [
      {"args": [[1, 5], 2], "expected": 10}, {"args": [[7, 3, 1], 3], "expected": 21},
      {"args": [[-2], 1], "expected": -2}]}
  assert "```python\nclass Solution:" in call["prompt"] and "standard input" in stdin["prompt"]
  assert (stdin["platform"], stdin["contest_date"], call["difficulty"]) == ("atcoder", "2024-09-07", "medium")
  # Parquet with contest_date as a timestamp column reads the same.
  import datetime

  rows = [{**r, "contest_date": datetime.datetime.fromisoformat(r["contest_date"])} for r in lcb_rows()]
  from_parquet = load_benchmark("livecodebench", write(tmp_path / "lcb.parquet", rows), WINDOW)
  assert [r["answer"] for r in from_parquet] == [r["answer"] for r in recs]
  write(tmp_path / "old.jsonl", lcb_rows()[2:])
  _raises(lambda: load_benchmark("livecodebench", str(tmp_path / "old.jsonl"), WINDOW),
          "all 1 problems fall outside the contest_date window")


def test_livecodebench_refuses_any_pickle_but_a_string(tmp_path):
  class Boom:
    def __reduce__(self):
      return (os.system, ("echo pwned",))

  evil = base64.b64encode(zlib.compress(pickle.dumps(Boom()))).decode()
  rows = lcb_rows()
  write(tmp_path / "evil.jsonl", [rows[0], {**rows[1], "private_test_cases": evil}])
  _raises(lambda: load_benchmark("livecodebench", str(tmp_path / "evil.jsonl")),
          "evil.jsonl:2: column 'private_test_cases'", "STACK_GLOBAL", "nothing is unpickled")
  listed = base64.b64encode(zlib.compress(pickle.dumps([{"input": "1", "output": "1", "testtype": "stdin"}])))
  with pytest.raises(ValueError, match="opcode EMPTY_LIST"):
    decode_test_cases(listed.decode())
  assert pickled_string(pickle.dumps("plain", protocol=0)) == "plain"
  tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
  assert decode_test_cases(compress_tests(tests)) == decode_test_cases(json.dumps(tests)) == tests
  for value, message in [("not base64 at all!", "neither a JSON list nor base64"),
                         (base64.b64encode(b"raw bytes").decode(), "not zlib"),
                         (json.dumps([{"input": "1", "output": 2, "testtype": "stdin"}]), "'output' must be a string"),
                         (json.dumps([{"input": "1", "output": "2", "testtype": "interactive"}]), "testtype")]:
    with pytest.raises(ValueError, match=message):
      decode_test_cases(value)
  mixed = {**rows[0], "private_test_cases": json.dumps([{"input": "1", "output": "1", "testtype": "functional"}])}
  write(tmp_path / "mixed.jsonl", [mixed])
  _raises(lambda: load_benchmark("livecodebench", str(tmp_path / "mixed.jsonl")), "mixed.jsonl:1",
          "mixes test types ['functional', 'stdin']")
  write(tmp_path / "nofn.jsonl", [{**rows[1], "metadata": "{}"}])
  _raises(lambda: load_benchmark("livecodebench", str(tmp_path / "nofn.jsonl")), "nofn.jsonl:1: column 'metadata'",
          "func_name")


def test_rows_are_read_whole_or_not_at_all(tmp_path):
  bad = tmp_path / "b.jsonl"
  bad.write_text(json.dumps(math500_rows()[0]) + "\n\n{not json\n")
  _raises(lambda: list(iter_rows(str(bad))), f"{bad}:3: malformed JSON")
  (tmp_path / "list.jsonl").write_text("[1, 2]\n")
  _raises(lambda: list(iter_rows(str(tmp_path / "list.jsonl"))), "list.jsonl:1: expected a JSON object, got list")
  (tmp_path / "x.txt").write_text("")
  _raises(lambda: list(iter_rows(str(tmp_path / "x.txt"))), "cannot tell the format")
  (tmp_path / "t.parquet").write_bytes(b"PAR1 truncated")
  _raises(lambda: list(iter_rows(str(tmp_path / "t.parquet"))), "not a readable Parquet file")
  (tmp_path / "empty.jsonl").write_text("\n")
  _raises(lambda: load_benchmark("math500", str(tmp_path / "empty.jsonl")), "no MATH-500 problems")
  # The paper's Table 3 rows, in its order.
  assert [(b.name, b.title, b.metrics) for b in BENCHMARKS.values()] == [
      ("aime2024", "AIME 2024", ("pass@1", "cons@k")), ("math500", "MATH-500", ("pass@1",)),
      ("gpqa_diamond", "GPQA Diamond", ("pass@1",)), ("livecodebench", "LiveCodeBench", ("pass@1",))]
