"""GPQA Diamond from a local file, graded as multiple choice (task "multiple_choice").

Columns of `Idavidrein/gpqa` (gpqa_diamond.csv, or the same as Parquet / JSONL): `Question`,
`Correct Answer`, `Incorrect Answer 1..3` and `Record ID`; the dataset's other columns are ignored.
The four options are shuffled per question, deterministically from (seed, Record ID), so a run is
repeatable and the correct option's letter is spread evenly; the record keeps the letter as its
answer and the options in order as `choices`.
"""
from __future__ import annotations

import hashlib

import numpy as np

from r1jax.data.benchmarks.rows import Row, finish, record
from r1jax.data.sources import iter_rows

GPQA_DIAMOND = "gpqa_diamond"
TASK = "multiple_choice"
LETTERS = "ABCD"
_INSTRUCTION = "Answer with the letter (A, B, C or D) of the correct option."


def option_order(record_id: str, seed: int) -> list[int]:
  """A permutation of the 4 options (index 0 = the correct answer) from (seed, Record ID) only:
  a stable hash, not Python's salted `hash`, so every process and run agrees."""
  h = int.from_bytes(hashlib.sha256(f"gpqa/{seed}/{record_id}".encode("utf-8")).digest()[:8], "big")
  return [int(i) for i in np.random.default_rng(h).permutation(len(LETTERS))]


def choices_prompt(question: str, choices: list[str]) -> str:
  """The question, then one option a line ("A) ...")."""
  lines = "\n".join(f"{letter}) {text}" for letter, text in zip(LETTERS, choices))
  return f"{question}\n\n{lines}\n\n{_INSTRUCTION}"


def load_gpqa(path: str, options=None) -> list[dict]:
  seed = int(getattr(options, "seed", 0))
  out = []
  for loc, raw in iter_rows(path):
    row = Row(loc, raw)
    record_id = row.text("Record ID")
    columns = ["Correct Answer"] + [f"Incorrect Answer {i}" for i in (1, 2, 3)]
    texts = [row.text(c) for c in columns]
    for i, text in enumerate(texts):
      if text in texts[:i]:
        raise row.error(columns[i], f"the same text as column {columns[texts.index(text)]!r}: the "
                                    "options must differ")
    order = option_order(record_id, seed)
    choices = [texts[i] for i in order]
    out.append(record(row, benchmark=GPQA_DIAMOND, ident=record_id,
                      prompt=choices_prompt(row.text("Question"), choices),
                      answer=LETTERS[order.index(0)], task=TASK, choices=choices))
  return finish("GPQA Diamond", path, out)
