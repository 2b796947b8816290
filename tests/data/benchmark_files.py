"""Tiny benchmark files in the public column layouts (AIME 2024, MATH-500, GPQA, LiveCodeBench),
written by the tests themselves: JSONL, Parquet (pyarrow) or CSV."""
import base64
import csv
import json
import os
import pickle
import zlib

LCB_STDIN_RIGHT = "a, b = map(int, input().split())\nprint(a + b)\n"
LCB_STDIN_WRONG = "a, b = map(int, input().split())\nprint(a - b)\n"  # right on the public test only
# The annotations need the prelude's `from typing import *`, as LeetCode's judge provides it.
LCB_CALL_RIGHT = ("class Solution:\n    def maxOf(self, nums: List[int], k: int) -> int:\n"
                  "        return max(nums) * k\n")
LCB_CALL_WRONG = ("class Solution:\n    def maxOf(self, nums: List[int], k: int) -> int:\n"
                  "        return nums[-1] * k\n")  # right on the public test only (its max is last)


def write(path, rows):
  """Rows to `path`: .jsonl (one object a line), .parquet (pyarrow) or .csv (header + rows)."""
  path = str(path)
  if path.endswith(".jsonl"):
    with open(path, "w", encoding="utf-8") as f:
      for r in rows:
        f.write(json.dumps(r) + "\n")
  elif path.endswith(".parquet"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
  elif path.endswith(".csv"):
    with open(path, "w", newline="", encoding="utf-8") as f:
      w = csv.DictWriter(f, fieldnames=list(rows[0]))
      w.writeheader()
      w.writerows(rows)
  else:
    raise ValueError(path)
  return path


def aime_rows():
  """Maxwell-Jia/AIME_2024 layout."""
  return [{"ID": "2024-I-1", "Problem": "[aime-1] Find the remainder when 2024 is divided by 1000.",
           "Solution": "2024 = 2 * 1000 + 24.", "Answer": 24},
          {"ID": "2024-II-3", "Problem": "[aime-2] How many positive divisors does 12 have?",
           "Solution": "1, 2, 3, 4, 6, 12.", "Answer": 6}]


def math500_rows():
  """HuggingFaceH4/MATH-500 layout."""
  return [{"problem": "[math-1] Compute $\\frac{3}{6}$.", "solution": "It is $\\frac{1}{2}$.",
           "answer": "\\frac{1}{2}", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
          {"problem": "[math-2] Solve $x + 2 = 5$.", "solution": "$x = 3$.", "answer": "3",
           "subject": "Algebra", "level": 2, "unique_id": "test/algebra/7.json"}]


def gpqa_rows(n=2):
  """Idavidrein/gpqa layout (with one of its other columns, which the loader ignores)."""
  return [{"Pre-Revision Question": "old", "Question": f"[gpqa-{i + 1}] Which particle carries charge {i}?",
           "Correct Answer": f"right {i}", "Incorrect Answer 1": f"wrong a{i}",
           "Incorrect Answer 2": f"wrong b{i}", "Incorrect Answer 3": f"wrong c{i}", "Record ID": f"rec{i:03d}"}
          for i in range(n)]


def compress_tests(tests):
  """The release's compressed form of a test-case list: base64(zlib(pickle(json string)))."""
  return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode("ascii")


def lcb_rows():
  """livecodebench/code_generation_lite layout: a stdin problem with plain-JSON private tests, a
  functional one with compressed private tests, and one outside the paper's date window."""
  stdin = lambda i, o: {"input": i, "output": o, "testtype": "stdin"}
  call = lambda i, o: {"input": i, "output": o, "testtype": "functional"}
  return [
      {"question_title": "Sum", "question_content": "[lcb-1] Read two integers a and b; print a + b.",
       "platform": "atcoder", "question_id": "abc001_a", "contest_date": "2024-09-07T00:00:00",
       "starter_code": "", "difficulty": "easy", "public_test_cases": json.dumps([stdin("3 0\n", "3\n")]),
       "private_test_cases": json.dumps([stdin("2 5\n", "7\n"), stdin("10 -4\n", "6\n")]),
       "metadata": "{}"},
      {"question_title": "Max times k", "question_content": "[lcb-2] Return max(nums) * k.",
       "platform": "leetcode", "question_id": "3001", "contest_date": "2024-11-16T00:00:00",
       "starter_code": "class Solution:\n    def maxOf(self, nums: List[int], k: int) -> int:\n        ",
       "difficulty": "medium", "public_test_cases": json.dumps([call("[1, 5]\n2", "10")]),
       "private_test_cases": compress_tests([call("[7, 3, 1]\n3", "21"), call("[-2]\n1", "-2")]),
       "metadata": json.dumps({"func_name": "maxOf"})},
      {"question_title": "Old", "question_content": "[lcb-old] Print 1.", "platform": "codeforces",
       "question_id": "1A", "contest_date": "2023-05-01T00:00:00", "starter_code": "", "difficulty": "easy",
       "public_test_cases": json.dumps([stdin("", "1\n")]), "private_test_cases": "[]", "metadata": "{}"},
  ]


def benchmark_files(directory):
  """One file per benchmark, in each of the formats: {name: path}."""
  os.makedirs(directory, exist_ok=True)
  return {"aime2024": write(os.path.join(directory, "aime_2024.parquet"), aime_rows()),
          "math500": write(os.path.join(directory, "math500.jsonl"), math500_rows()),
          "gpqa_diamond": write(os.path.join(directory, "gpqa_diamond.csv"), gpqa_rows()),
          "livecodebench": write(os.path.join(directory, "lcb.jsonl"), lcb_rows())}
