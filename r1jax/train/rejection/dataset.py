"""The SFT dataset from the kept rows: mixing in non-reasoning data, writing it atomically."""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

from r1jax import fs
from r1jax.data.sources import write_jsonl

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "arrayrecord")


def mix_with_non_reasoning(reasoning_rows: Sequence[dict], non_reasoning_rows: Sequence[dict],
                           ratio: float = 3.0, seed: int = 0) -> list[dict]:
  """`round(len(reasoning) / ratio)` non-reasoning rows (drawn without replacement) shuffled in
  with all reasoning rows. The paper: ~600k reasoning + ~200k non-reasoning samples, ratio 3.

  `ratio` = reasoning rows per non-reasoning row; `math.inf` adds none. With too few
  non-reasoning rows, all are used and a warning says so.
  """
  if not (ratio > 0):
    raise ValueError(f"mix_with_non_reasoning: ratio must be > 0 (reasoning per non-reasoning row), got {ratio}")
  rng = np.random.default_rng([int(seed), 7919])
  wanted = 0 if math.isinf(ratio) else int(round(len(reasoning_rows) / ratio))
  if wanted > len(non_reasoning_rows):
    log.warning("mix: %d non-reasoning rows wanted for %d reasoning rows at ratio %g, only %d given; using all",
                wanted, len(reasoning_rows), ratio, len(non_reasoning_rows))
    wanted = len(non_reasoning_rows)
  picked = rng.choice(len(non_reasoning_rows), size=wanted, replace=False) if wanted else []
  extra = [dict(non_reasoning_rows[int(i)]) for i in np.sort(picked)]
  for row in extra:
    row.setdefault("source", "non_reasoning")
  mixed = list(reasoning_rows) + extra
  order = rng.permutation(len(mixed))
  return [mixed[int(i)] for i in order]


def _without_locations(row: Mapping[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in row.items() if not k.startswith("_")}


def write_dataset(rows: Sequence[Mapping[str, Any]], path: str, fmt: str = "jsonl") -> int:
  """Writes rows whole or not at all (a temp file renamed, or one object on a bucket) as JSON Lines
  or ArrayRecord (one UTF-8 JSON object per record, what `data.sources.ArrayRecordSource` reads);
  returns the count. Keys starting with "_" (source locations) are dropped."""
  if fmt not in FORMATS:
    raise ValueError(f"write_dataset: fmt must be one of {FORMATS}, got {fmt!r}")
  if fmt == "jsonl":
    return write_jsonl((_without_locations(row) for row in rows), path)
  from array_record.python.array_record_module import ArrayRecordWriter

  with tempfile.TemporaryDirectory(prefix="r1jax-arrayrecord-") as tmp:
    local = os.path.join(tmp, "data.arrayrecord")
    writer = ArrayRecordWriter(local, "group_size:1")
    try:
      for row in rows:
        writer.write(json.dumps(_without_locations(row), ensure_ascii=False).encode("utf-8"))
    finally:
      writer.close()
    fs.write_bytes(path, fs.read_bytes(local))
  return len(rows)
