"""Synthetic corpora: sizes, determinism, no test leakage, correct content, loadable end to end."""
import os
import re

import numpy as np
import pytest

from r1jax.data import pipelines, templates
from r1jax.data.records import DatasetSpec, canonicalize
from r1jax.data.sources import open_source
from r1jax.data.tasks import REASONING_TASKS, corpora, get_task
from r1jax.data.tokenizer import train_sentencepiece
from r1jax.rewards import registry

CJK = re.compile(r"[\u4e00-\u9fff]")


def verify(completion, answer, task: str) -> float:
  """The verifier of `task`: the per-item function of the reward registered under its name."""
  return registry.build(task).verify(completion, answer)


@pytest.fixture(scope="module")
def pretrain():
  return corpora.pretraining_corpus(600, seed=0)


def test_pretraining_corpus_has_no_test_problems(pretrain):
  assert len(pretrain) == 600 and all(set(d) == {"text"} for d in pretrain)
  assert corpora.pretraining_corpus(600, seed=0) == pretrain
  assert corpora.pretraining_corpus(600, seed=1) != pretrain
  text = "\n".join(d["text"] for d in pretrain)
  for name in REASONING_TASKS:
    for it in get_task(name).generate("test", 100, seed=0, difficulty=1):
      assert f"Question: {it['prompt']}\n" not in text


def test_pretraining_corpus_is_weak_and_mixed(pretrain):
  arith = [re.match(r"Question: What is (\d+) ([+×]) (\d+)\?\nAnswer: (-?\d+)$", d["text"])
           for d in pretrain]
  arith = [m for m in arith if m]
  assert len(arith) > 50
  wrong = [int(m[4]) != (int(m[1]) + int(m[3]) if m[2] == "+" else int(m[1]) * int(m[3]))
           for m in arith]
  assert 0.1 < np.mean(wrong) < 0.45  # answer_noise = 0.25: some, but weak, ability
  formatted = [d for d in pretrain if d["text"].startswith(templates.R1_ZERO_TEMPLATE[:40])]
  assert len(formatted) == 60 and all("</answer>" in d["text"] for d in formatted)
  plain = [d for d in pretrain if not d["text"].startswith(("Question:", "A conversation"))]
  assert len(plain) >= 100


def test_cold_start_traces_are_verified_r1_format():
  records = corpora.cold_start_corpus(90, seed=0, wait_prob=0.3)
  assert len(records) == 90 and {r["task"] for r in records} == set(corpora.REASONING_TASKS)
  spec = DatasetSpec(paths=("x",), kind="sft")
  waits = 0
  for r in records:
    assert not isinstance(canonicalize(r, spec), str)
    assert r["response"].startswith("<think>\n")
    reasoning, summary = r["response"].split("\n</think>\n\n")
    assert summary.strip() and "<answer>" in summary and "<answer>" not in reasoning
    assert verify(r["response"], r["answer"], r["task"]) == 1.0
    waits += "Wait, let me re-check" in reasoning
  assert 5 < waits < 60


def test_instruction_and_preference_content():
  for r in corpora.instruction_corpus(200, seed=0):
    p, a = r["prompt"], r["response"]
    if p.startswith("Rewrite in capital letters: "):
      assert a == p.split(": ", 1)[1].upper()
    elif p.startswith("Reverse the order of these words: "):
      assert a.split() == p.split(": ", 1)[1].split()[::-1]
    elif p.startswith("Sort these words alphabetically: "):
      assert a.split() == sorted(p.split(": ", 1)[1].split())
    elif p.startswith("How many words"):
      assert a == f"There are {len(p.split(': ', 1)[1].split())} words."
  prefs = corpora.preference_corpus(200, seed=0)
  assert all(r["chosen"] != r["rejected"] for r in prefs)
  assert {r["rejected_style"] for r in prefs} == {"wrong", "refusal", "off_topic", "dismissive"}


def test_safety_labels():
  rows = corpora.safety_corpus(300, seed=0)
  kinds = {r["kind"]: r["label"] for r in rows}
  assert kinds == {"harmful_compliance": 0, "refusal": 1, "benign": 1}
  assert 0.3 < np.mean([r["label"] == 0 for r in rows]) < 0.5


def test_mixed_language_fraction_matches_the_text():
  rows = corpora.mixed_language_corpus(120, seed=0)
  assert {r["language"] for r in rows} == {"en", "zh"}
  assert {r["mix"] for r in rows} == {0.0, 0.3, 0.6}
  for r in rows:
    reasoning = r["response"].split("<think>\n")[1].split("\n</think>")[0]
    lines = reasoning.split("\n")
    foreign = [bool(CJK.search(l)) != (r["language"] == "zh") for l in lines]
    assert r["mixed_fraction"] == pytest.approx(np.mean(foreign))
    if r["mix"] == 0.0:
      assert not any(foreign)
    assert bool(CJK.search(r["prompt"])) == (r["language"] == "zh")
    assert verify(r["response"], r["answer"], "arithmetic") == 1.0
  assert np.mean([r["mixed_fraction"] for r in rows if r["mix"] == 0.6]) > 0.3


def test_write_offline_datasets_loads_end_to_end(tmp_path):
  sizes = {"pretrain": 200, "cold_start": 30, "instruction": 20, "preference": 20, "safety": 20,
           "mixed_language": 20, "rl_train": 30, "rl_test": 10}
  counts = corpora.write_offline_datasets(tmp_path, seed=0, sizes=sizes)
  assert counts["cold_start"] == 30 and counts["rl_countdown_test"] == 10
  kinds = {"pretrain": "sft", "cold_start": "sft", "instruction": "sft", "mixed_language": "sft",
           "preference": "preference", "safety": "pointwise", "rl_countdown_train": "rl",
           "rl_arithmetic_test": "eval", "rl_knights_knaves_train": "rl"}
  for name, kind in kinds.items():
    src = open_source(DatasetSpec(paths=(os.path.join(tmp_path, f"{name}.jsonl"),), kind=kind,
                                  max_skip_fraction=0.0))
    assert len(src) == counts[name] and src.stats.skipped == 0
  # The demo's path: a tokenizer trained on the generated text, then an SFT batch.
  lines = [d["text"] for d in corpora.pretraining_corpus(300, seed=0)]
  tok = train_sentencepiece(lines, vocab_size=400)
  src = open_source(DatasetSpec(paths=(os.path.join(tmp_path, "cold_start.jsonl"),), kind="sft"))
  tpl = templates.PromptTemplate("r1", chat_format="plain")
  batch = next(iter(pipelines.sft_dataset(src, tok, tpl, batch_size=2, seq_len=1024,
                                          process_index=0, process_count=1)))
  assert batch["tokens"].shape == (2, 1024) and batch["loss_mask"].sum() > 0


def test_worked_pretraining_documents_and_task_choice():
  docs = corpora.pretraining_corpus(800, seed=0, tasks=("addition",), worked_fraction=0.6,
                                    trace_style="short", problem_fraction=0.6, template_fraction=0.15)
  assert len(docs) == 800
  worked = [d["text"] for d in docs if d["text"].startswith("Question:") and "\nresult " in d["text"]]
  plain = [d["text"] for d in docs if re.match(r"Question: .*\nAnswer: \d+$", d["text"])]
  assert 0.45 < len(worked) / (len(worked) + len(plain)) < 0.75  # worked_fraction 0.6
  for text in worked:  # a worked solution ends in its own (right) result
    a, b = map(int, re.match(r"Question: What is (\d+) \+ (\d+)\?", text).groups())
    assert text.endswith(f"result {a + b}\ncheck {a + b} - {b} = {a}, ok\nAnswer: {a + b}")
  assert not any("×" in d["text"] or "knight" in d["text"] for d in docs)  # addition only
  r1_zero = [d["text"] for d in docs if d["text"].startswith(templates.R1_ZERO_TEMPLATE[:40])]
  assert len(r1_zero) == 120 and sum("\nresult " in t for t in r1_zero) > 40
  test_prompts = {it["prompt"] for it in get_task("addition").generate("test", 200, seed=0, difficulty=1)}
  assert not any(f"Question: {p}\n" in d["text"] for d in docs for p in test_prompts)


def test_corpora_larger_than_the_problem_space_repeat_problems():
  n = 4000  # more than the ~2,800 distinct 2-digit train additions with a carry
  records = corpora.cold_start_corpus(n, seed=0, tasks=("addition",), trace_style="short")
  assert len(records) == n and len({r["id"] for r in records}) == n
  assert len({r["prompt"] for r in records}) < n
  assert all(verify(r["response"], r["answer"], "addition") == 1.0 for r in records[:200])
  with pytest.raises(ValueError, match="unknown reasoning task"):
    corpora.cold_start_corpus(10, tasks=("sudoku",))
