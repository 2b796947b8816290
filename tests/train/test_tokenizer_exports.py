"""A stage's export carries the tokenizer it used: an HF tokenizer (tokenizer.json, its config with
the special tokens and chat template) or a sentencepiece model, so the next stage starts from the
export with no tokenizer flag."""
import json
import os

import numpy as np
import pytest

from r1jax.data.tokenizer import HFTokenizer, copy_tokenizer_files, load_tokenizer
from r1jax.train.pipeline import apply_overrides, load_experiment
from r1jax.train.stages import run_stage
from tests.data.conftest import hf_tokenizer_dir  # noqa: F401  (the session fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


@pytest.fixture(scope="module")
def hf_dir(hf_tokenizer_dir, tmp_path_factory):  # noqa: F811
  """The test HF tokenizer, with a chat template in its config (as real checkpoints have)."""
  d = tmp_path_factory.mktemp("hf_tok_with_template")
  copy_tokenizer_files(hf_tokenizer_dir, d)
  config = json.load(open(d / "tokenizer_config.json"))
  json.dump({**config, "chat_template": TEMPLATE}, open(d / "tokenizer_config.json", "w"))
  return str(d)


def _sft(workdir, **fields):
  cfg = load_experiment("cold_start.py:tiny", os.path.join(ROOT, "experiments"))
  cfg.train.steps, cfg.train.log_every, cfg.train.checkpoint_every, cfg.train.progress = 1, 1, 1, False
  cfg.data.batch_size, cfg.data.seq_len, cfg.data.corpus_size = 8, 256, 16
  apply_overrides(cfg, fields, "test")
  run_stage(cfg, workdir)
  return os.path.join(workdir, "final")


def test_copy_tokenizer_files_from_a_directory_a_json_and_a_model(hf_dir, tmp_path):
  assert sorted(copy_tokenizer_files(hf_dir, tmp_path / "a")) == ["tokenizer.json", "tokenizer_config.json"]
  assert sorted(copy_tokenizer_files(os.path.join(hf_dir, "tokenizer.json"), tmp_path / "b")) == \
      ["tokenizer.json", "tokenizer_config.json"]
  assert load_tokenizer(tmp_path / "b").encode("2 + 3") == load_tokenizer(hf_dir).encode("2 + 3")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="no tokenizer.json or tokenizer.model"):
    copy_tokenizer_files(tmp_path / "empty", tmp_path / "c")
  with pytest.raises(ValueError, match="not a tokenizer"):
    copy_tokenizer_files(tmp_path / "vocab.txt", tmp_path / "c")


def test_an_hf_tokenizer_travels_through_exports_to_the_next_stage(hf_dir, tmp_path, devices8):
  first = _sft(str(tmp_path / "sft"), **{"tokenizer.path": hf_dir, "tokenizer.train_corpus": ""})
  assert {"tokenizer.json", "tokenizer_config.json"} <= set(os.listdir(first))
  assert json.load(open(os.path.join(first, "tokenizer_config.json")))["chat_template"] == TEMPLATE
  tok = load_tokenizer(first)
  assert isinstance(tok, HFTokenizer) and tok.encode("<think> 12 </think>") == load_tokenizer(hf_dir).encode(
      "<think> 12 </think>")
  # The next stage: init_from the export, no tokenizer flag at all.
  second = _sft(str(tmp_path / "sft2"), **{"model.init_from": first, "model.preset": "", "tokenizer.path": "",
                                            "tokenizer.train_corpus": ""})
  assert set(os.listdir(first)) <= set(os.listdir(second)) | {"r1jax_stage.json"}
  rows = [json.loads(line) for line in open(os.path.join(tmp_path, "sft2", "metrics.jsonl"))]
  assert np.isfinite(rows[-1]["train/loss"])


def test_a_sentencepiece_tokenizer_travels_too(tmp_path, devices8):
  first = _sft(str(tmp_path / "sft"))  # the tiny preset trains its own sentencepiece model
  assert "tokenizer.model" in os.listdir(first)
  second = _sft(str(tmp_path / "sft2"), **{"model.init_from": first, "model.preset": "", "tokenizer.train_corpus": ""})
  assert "tokenizer.model" in os.listdir(second)
