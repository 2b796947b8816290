"""`data.corpus` + `data.corpus_options`: a synthetic corpus written once into the workdir."""
import json
import os

import pytest

from r1jax.data.tasks import corpora
from r1jax.train import common
from r1jax.train.configs import sft_base


def _cfg(**options):
  c = sft_base()
  c.data.corpus, c.data.corpus_size = "cold_start", 30
  c.data.corpus_options = options
  return c


def test_options_reach_the_corpus_and_the_file_is_written_once(tmp_path):
  cfg = _cfg(tasks=("addition",), trace_style="short")
  common.resolve_offline_corpus(cfg.data, str(tmp_path))
  path = os.path.join(tmp_path, "data", "cold_start.jsonl")
  assert tuple(cfg.data.spec.paths) == (path,)
  rows = [json.loads(line) for line in open(path)]
  assert rows == corpora.cold_start_corpus(30, seed=0, tasks=("addition",), trace_style="short")
  assert {r["task"] for r in rows} == {"addition"} and all("\nresult " in r["response"] for r in rows)
  mtime = os.path.getmtime(path)
  cfg2 = _cfg(tasks=("addition",), trace_style="short")
  common.resolve_offline_corpus(cfg2.data, str(tmp_path))  # a resumed run reuses the file
  assert os.path.getmtime(path) == mtime


def test_unknown_option_names_the_config_field(tmp_path):
  with pytest.raises(ValueError, match="config.data.corpus_options.*trace_colour"):
    common.resolve_offline_corpus(_cfg(trace_colour="red").data, str(tmp_path))
  assert not os.path.exists(os.path.join(tmp_path, "data", "cold_start.jsonl"))
