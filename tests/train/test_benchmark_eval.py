"""The evaluation stage on the paper's benchmark files, end to end: experiments/evaluate.py:paper
with a tiny random checkpoint and a tiny file of each benchmark (AIME 2024 Parquet, MATH-500 JSONL,
GPQA CSV, LiveCodeBench JSONL) -> eval_results.json, eval_table.md and the Table-3 paper_table.md.

A random policy is right on nothing, so the sampler is wrapped: it samples as always (the real
compiled program on the real checkpoint), then some rows' completions are replaced by scripted
answers, right and wrong ones, written as a model would. The expected scores follow from the script
alone, by hand; the rows left random score 0. Config errors name the key and the file.
"""
import dataclasses
import json
import os

import numpy as np
import pytest

from r1jax.data.benchmarks import LoadOptions, load_benchmark
from r1jax.data.benchmarks.gpqa import LETTERS
from r1jax.data.templates import r1_zero_prompt
from r1jax.train import evaluate_stage
from r1jax.train.config_check import ConfigError
from r1jax.train.pipeline import apply_overrides, load_experiment
from r1jax.train.stages import run_stage, validate
from tests.data.benchmark_files import (LCB_CALL_RIGHT, LCB_STDIN_RIGHT, LCB_STDIN_WRONG, benchmark_files,
                                        gpqa_rows, lcb_rows)
from tests.train.tiny_models import random_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = 1234  # the preset's eval.seed: it also shuffles the GPQA options
KS = {"aime2024": 4, "math500": 2, "gpqa_diamond": 2, "livecodebench": 2}


def _code(program):
  return f"<think>plan</think> <answer>```python\n{program}```</answer>"


def _script(files):
  """{problem marker: the completion of sample j, or None to keep the sampled one}."""
  gpqa = load_benchmark("gpqa_diamond", files["gpqa_diamond"], LoadOptions(seed=SEED))
  right = [r["answer"] for r in gpqa]
  wrong = [next(x for x in LETTERS if x != a) for a in right]
  return {
      "[aime-1]": ["<answer>24</answer>", "<answer>\\boxed{24}</answer>", "<answer>25</answer>", None],
      "[aime-2]": ["<answer>7</answer>", "<answer>7</answer>", "<answer>6</answer>", None],
      "[math-1]": ["<answer>0.5</answer>", None],  # gold \frac{1}{2}: math-verify's equivalence
      "[math-2]": ["<answer>3</answer>", "<answer>4</answer>"],
      "[gpqa-1]": [f"The answer is ({right[0]}).", f"<answer>{wrong[0]}</answer>"],
      "[gpqa-2]": [f"<answer>{right[1]})</answer>", f"so \\boxed{{{right[1]}}}"],
      "[lcb-1]": [_code(LCB_STDIN_RIGHT), _code(LCB_STDIN_WRONG)],
      "[lcb-2]": [_code(LCB_CALL_RIGHT), None],
  }


class ScriptedSampler:
  """The real sampler, then scripted completions for the rows the script names."""

  def __init__(self, inner, tokenizer, script, seen):
    self.inner, self.tok, self.script, self.seen = inner, tokenizer, script, seen

  def generate(self, params, prompts, sampling, **kw):
    out = self.inner.generate(params, prompts, sampling, **kw)
    rows = {}
    for r, q in enumerate(np.asarray(out.prompt_index)):
      text = self.tok.decode(prompts[q])
      marker = next((m for m in self.script if m in text), None)
      j = r - int(np.argmax(np.asarray(out.prompt_index) == q))  # rows are prompt-major
      self.seen.append((marker, j))
      if marker is not None and self.script[marker][j] is not None:
        rows[r] = self.tok.encode(self.script[marker][j]) + [self.tok.eos_id]
    width = max([out.tokens.shape[1]] + [len(ids) for ids in rows.values()])
    tokens = np.zeros((out.tokens.shape[0], width), np.int32)
    tokens[:, :out.tokens.shape[1]] = out.tokens
    lengths, reasons = np.array(out.lengths), list(out.finish_reasons)
    for r, ids in rows.items():
      tokens[r] = 0
      tokens[r, :len(ids)] = ids
      lengths[r], reasons[r] = len(ids), "stop"
    pad = np.zeros((tokens.shape[0], width), np.float32)
    return dataclasses.replace(out, tokens=tokens, lengths=lengths, finish_reasons=reasons, logprobs=pad)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  from r1jax.convert.hf import save_hf_model
  from r1jax.data.tokenizer import train_sentencepiece

  files = benchmark_files(str(tmp_path_factory.mktemp("benchmarks")))
  lines = [r1_zero_prompt("x")] + [json.dumps(r) for r in gpqa_rows() + lcb_rows()]
  lines += [t for texts in _script(files).values() for t in texts if t]
  tok = train_sentencepiece(lines, vocab_size=600)
  ckpt = str(tmp_path_factory.mktemp("ckpt"))
  save_hf_model(random_model(tok.vocab_size, max_position_embeddings=2048), ckpt)
  tok.save(os.path.join(ckpt, "tokenizer.model"))
  return ckpt, tok, files


def _config(ckpt, files, **fields):
  cfg = load_experiment("evaluate.py:paper", os.path.join(ROOT, "experiments"))
  apply_overrides(cfg, {"checkpoints": f"first={ckpt},second={ckpt}",
                        "eval.benchmarks": ",".join(f"{k}={v}" for k, v in files.items()),
                        "eval.benchmark_k": ",".join(f"{k}={v}" for k, v in KS.items()),
                        "eval.max_new_tokens": 8, **fields}, "test")
  return cfg


def test_paper_benchmarks_through_the_evaluation_stage(checkpoint, tmp_path, monkeypatch, devices8):
  ckpt, tok, files = checkpoint
  script, seen = _script(files), []
  real = evaluate_stage.Sampler

  class Sampler:
    @staticmethod
    def from_model(model, **kw):
      inner, params = real.from_model(model, **kw)
      return ScriptedSampler(inner, tok, script, seen), params

  monkeypatch.setattr(evaluate_stage, "Sampler", Sampler)
  workdir = str(tmp_path / "eval")
  run_stage(_config(ckpt, files), workdir)
  assert {m for m, _ in seen} == set(script)  # every scripted problem was sampled (and nothing else)
  assert "[lcb-old]" not in str(seen)  # outside the paper's contest window

  results = json.load(open(os.path.join(workdir, "eval_results.json")))["results"]
  assert [(r["label"], r["benchmark"]) for r in results] == [
      (label, b) for label in ("first", "second") for b in ("aime2024", "math500", "gpqa_diamond", "livecodebench")]
  by = {(r["label"], r["benchmark"]): r for r in results}
  for r in results:
    assert (r["k"], r["num_problems"], r["max_new_tokens"]) == (KS[r["benchmark"]], 2, 8)
    assert (r["temperature"], r["top_p"]) == (0.6, 0.95)
    assert r["extra"]["grading"] == {} and r["extra"]["file"] == files[r["benchmark"]]
    assert r == {**by[("first", r["benchmark"])], "label": r["label"]}  # the same checkpoint twice
  first = {b: by[("first", b)] for b in KS}
  # Per problem: the fraction of its k samples the script made right; the random rows are wrong.
  assert first["aime2024"]["per_problem"] == [0.5, 0.25] and first["aime2024"]["cons_at_k"] == 0.5
  assert first["math500"]["per_problem"] == [0.5, 0.5]
  assert first["gpqa_diamond"]["per_problem"] == [0.5, 1.0] and first["gpqa_diamond"]["cons_at_k"] == 1.0
  assert first["livecodebench"]["per_problem"] == [0.5, 0.5] and first["livecodebench"]["cons_at_k"] is None
  assert first["livecodebench"]["extra"]["task"] == "code"

  table = open(os.path.join(workdir, "paper_table.md")).read().strip().split("\n")
  assert table[0] == "| Benchmark (Metric) | first | second |"
  rows = [line.split(" | ")[0].lstrip("| ") + " | " + line.split(" | ")[1] for line in table[2:]]
  assert rows == ["AIME 2024 (pass@1) | 37.5 ± 12.5",  # (0.5 + 0.25) / 2, SE std([.5, .25]) / sqrt(2)
                  "AIME 2024 (cons@4) | 50.0 ± 50.0",
                  "MATH-500 (pass@1) | 50.0 ± 0.0",
                  "GPQA Diamond (pass@1) | 75.0 ± 25.0",
                  "LiveCodeBench (pass@1) | 50.0 ± 0.0"]
  full = open(os.path.join(workdir, "eval_table.md")).read()
  assert "| gpqa_diamond (cons@2) | 100.0 ± 0.0 | 100.0 ± 0.0 |" in full and "livecodebench (cons" not in full


def test_benchmark_config_errors_name_the_key_and_file(checkpoint, tmp_path):
  ckpt, _, files = checkpoint
  validate(_config(ckpt, files))
  missing, text = str(tmp_path / "nope.parquet"), str(tmp_path / "aime.txt")
  open(text, "w").close()
  one = {"eval.benchmark_k": ""}
  cases = [
      ({"eval.benchmarks": f"aime2024={missing}", **one}, f"config.eval.benchmarks: aime2024: {missing} does not exist"),
      ({"eval.benchmarks": f"aime2025={files['aime2024']}", **one}, "config.eval.benchmarks: unknown benchmark 'aime2025'"),
      ({"eval.benchmarks": "aime2024=", **one}, "config.eval.benchmarks: entry 'aime2024=' is not name=file"),
      ({"eval.benchmarks": f"aime2024={text}", **one}, f"config.eval.benchmarks: aime2024: {text} is not a "),
      ({"eval.benchmarks": f"math500={files['math500']}", "eval.benchmark_k": "aime2024=4"},
       "config.eval.benchmark_k: 'aime2024' is not in config.eval.benchmarks"),
      ({"eval.benchmark_k": "aime2024=0"}, "config.eval.benchmark_k: aime2024='0' is not a positive integer"),
      ({"eval.benchmarks": "", **one}, "config.eval.tasks: name at least one task (comma-separated), or benchmark files"),
      ({"eval.livecodebench.date_to": "Jan 2025"}, "config.eval.livecodebench.date_to: 'Jan 2025' is not an ISO date"),
  ]
  for fields, message in cases:
    with pytest.raises(ConfigError) as e:
      validate(_config(ckpt, files, **fields))
    assert message in str(e.value), (message, str(e.value))
  cfg = _config(ckpt, files)
  cfg.eval.code.wall_sec = 3.0
  with pytest.raises(ConfigError, match=r"config.eval.code: unknown code-reward option\(s\) \['wall_sec'\]"):
    validate(cfg)
