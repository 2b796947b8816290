"""Building pipelines from the `data` config section (files or offline tasks)."""
import os

import pytest

from r1jax.data.config import data_config, dataset_from_config, source_from_config
from r1jax.data.sources import write_jsonl
from r1jax.data.tasks import countdown


def test_rl_pipeline_from_an_offline_task(sp_tokenizer):
  cfg = data_config("rl")
  cfg.task.name, cfg.task.n, cfg.batch_size, cfg.max_prompt_len = "countdown", 40, 8, 400
  batches = [next(iter(dataset_from_config(cfg, sp_tokenizer, process_index=i, process_count=2)))
             for i in range(2)]
  assert all(len(b["prompt_tokens"]) == 4 for b in batches)  # global 8 over 2 processes
  ids = [m["id"] for b in batches for m in b["metadata"]]
  assert len(set(ids)) == 8 and all(i.startswith("countdown/train/0/") for i in ids)
  b = batches[0]
  for ans, meta in zip(b["answers"], b["metadata"]):
    assert meta["task"] == "countdown" and set(ans) == {"target", "numbers"}
    assert countdown.prompt_for(ans["numbers"], ans["target"]) == meta["prompt"]


def test_sft_and_eval_pipelines_from_files(sp_tokenizer, tmp_path):
  path = os.path.join(tmp_path, "d.jsonl")
  write_jsonl([{"q": f"q{i}", "a": f"answer {i}", "r": f"resp {i}"} for i in range(12)], path)
  cfg = data_config("sft")
  cfg.spec.paths, cfg.spec.fields = (path,), {"prompt": "q", "response": "r"}
  cfg.batch_size, cfg.seq_len, cfg.template.name = 2, 32, "raw"
  b = next(iter(dataset_from_config(cfg, sp_tokenizer, process_index=0, process_count=1)))
  assert b["tokens"].shape == (2, 32) and b["segment_ids"].max() > 1  # packed
  ev = data_config("eval")
  ev.spec.paths, ev.spec.fields = (path,), {"prompt": "q", "answer": "a"}
  ev.k, ev.batch_size, ev.template.name = 2, 6, "raw"
  rows = [r for b in dataset_from_config(ev, sp_tokenizer, process_index=0, process_count=1)
          for r in b["answers"]]
  assert rows == [f"answer {i}" for i in range(12) for _ in range(2)]


def test_config_errors_name_the_key(sp_tokenizer):
  with pytest.raises(ValueError, match="data.kind"):
    data_config("dpo")
  cfg = data_config("rl")
  with pytest.raises(ValueError, match="data.spec.paths.*data.task.name"):
    source_from_config(cfg)
  cfg.task.name, cfg.batch_size = "arithmetic", 3
  with pytest.raises(ValueError, match="not divisible by the 2 processes"):
    dataset_from_config(cfg, sp_tokenizer, process_index=0, process_count=2)
