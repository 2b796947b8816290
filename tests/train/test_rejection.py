"""Rejection sampling / distillation data (train/rejection/, train/rejection_stage.py).

- readability filters on hand-made chains of thought, and against the mixed-language corpus's
  own labels (mixed_fraction);
- select_samples against a brute-force reference, keep_per_prompt, dedup, drop accounting;
- mixing ratio, and dataset round trips (JSONL, ArrayRecord) through r1jax's own SFT readers;
- generate_and_select on a tiny random model: what it keeps is exactly what the fake reward
  marked correct among the completions the sampler returned;
- run_rejection end to end on a micro config: dataset, stats, metrics, skip when finished,
  and a resumed run (one shard redone) writes the identical file.
"""
import importlib.util
import json
import math
import os

import numpy as np
import pytest
from flax import nnx

from r1jax.data import templates
from r1jax.data.records import DatasetSpec
from r1jax.data.sources import open_source
from r1jax.data.tasks import corpora
from r1jax.rewards.registry import RewardOutput, register_verifier
from r1jax.sampling import Sampler
from r1jax.train import rejection
from r1jax.train.rejection import FilterConfig, filter_reasons, mix_with_non_reasoning, select_samples, write_dataset
from tests.train.tiny_models import random_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARITY_REWARD = "test_rejection_parity"


def _cot(reasoning, summary="So the answer is 4.", answer="4"):
  return templates.r1_response(reasoning, summary, answer)


CLEAN = _cot("I need 2 + 2.\nAdding the units gives 4.\nCheck: 4 - 2 = 2, that matches.")
MIXED = _cot("I need 2 + 2.\n我从右往左逐列相加，并记下每一步的进位。\n结果一致。 Adding gives 4.")


# ------------------------------------------------------------------------------------ filters


def test_filters_on_hand_made_chains_of_thought():
  assert filter_reasons(CLEAN) == []
  assert filter_reasons(MIXED) == ["mixed_language"]
  assert filter_reasons(MIXED, min_language_consistency=0.0) == []  # 0 disables
  # The same Chinese text is clean for a Chinese target (region codes are ignored).
  zh = _cot("我需要计算 2 + 2。从右往左逐列相加，结果是 4。")
  assert filter_reasons(zh, language="zh-CN") == [] and filter_reasons(zh, language="en") == ["mixed_language"]
  # Pure math has no words in any language: nothing is mixed.
  assert filter_reasons(_cot("$2 + 2 = 4$\n4 - 2 = 2")) == []

  wall = "I add the numbers " + "and keep checking the carry " * 12  # one 354-char line
  assert filter_reasons(_cot(wall), max_paragraph_chars=300) == ["long_paragraph"]
  assert filter_reasons(_cot(wall.replace("and keep", "\nand keep")), max_paragraph_chars=300) == []
  assert filter_reasons(_cot(wall), max_paragraph_chars=0) == []  # 0 disables
  assert rejection.longest_paragraph("ab\n\n  abcd  \r\nabc") == 4

  code = _cot("Let me write it:\n```python\nprint(2 + 2)\n```\nIt prints 4.")
  assert filter_reasons(code) == ["code_block"]
  assert filter_reasons(code, allow_code_blocks=True) == []
  # A fence in the summary (after </think>) is not part of the chain of thought.
  assert filter_reasons(_cot("2 + 2 = 4.", summary="```\n4\n```")) == []

  no_think = "The answer is 4. <answer>4</answer>"
  assert filter_reasons(no_think) == ["no_think"]
  assert filter_reasons(no_think, require_think=False) == []
  assert filter_reasons("```x``` 我从右往左逐列相加并记下每一步", require_think=False) == ["mixed_language", "code_block"]
  all_three = _cot("我从右往左逐列相加 " * 30 + "\n```\nx\n```")
  assert filter_reasons(all_three, max_paragraph_chars=100) == ["mixed_language", "long_paragraph", "code_block"]


def test_language_filter_agrees_with_the_mixed_language_corpus_labels():
  rows = corpora.mixed_language_corpus(120, seed=3)
  assert {r["mixed_fraction"] > 0 for r in rows} == {True, False}
  for r in rows:
    rejected = "mixed_language" in filter_reasons(r["response"], language=r["language"])
    assert rejected == (r["mixed_fraction"] > 0), (r["language"], r["mixed_fraction"], r["response"])


def test_filter_config_rejects_bad_values():
  with pytest.raises(ValueError, match="unknown language 'xx'"):
    FilterConfig(language="xx")
  with pytest.raises(ValueError, match="min_language_consistency"):
    FilterConfig(min_language_consistency=1.5)
  with pytest.raises(ValueError, match="max_paragraph_chars"):
    FilterConfig(max_paragraph_chars=-1)


# ---------------------------------------------------------------------------------- selection


def _reference_select(records, texts, scores, reasons, keep, filters):
  """Direct transcription of the rules: correct, finished, readable, new, under the cap."""
  kept = []
  for rec, ts, ss, rs in zip(records, texts, scores, reasons):
    seen = []
    for j, (t, s, r) in enumerate(zip(ts, ss, rs)):
      ok = (s >= 0.5 and r == "stop" and not filter_reasons(
          t, language=rec.get("language", "en"), min_language_consistency=filters.min_language_consistency,
          max_paragraph_chars=filters.max_paragraph_chars, allow_code_blocks=filters.allow_code_blocks,
          require_think=filters.require_think))
      norm = " ".join(t.split())
      if ok and norm not in seen and len(seen) < keep:
        seen.append(norm)
        kept.append((rec["id"], j, t))
  return kept


def test_select_samples_hand_made_case():
  recs = [{"prompt": "2+2?", "answer": "4", "task": "arithmetic", "id": "a"},
          {"prompt": "3+3?", "answer": "6", "task": "arithmetic", "id": "b", "language": "en-US"}]
  clean_b = _cot("3 + 3 = 6.", "It is 6.", "6")
  texts = [[CLEAN, MIXED, CLEAN + "  ", _cot("2 + 2 = 4 indeed."), _cot("Also 4."), _cot("Wrong.", answer="5")],
           [clean_b, clean_b, "no think <answer>6</answer>"]]
  scores = [[1, 1, 1, 1, 1, 0], [1, 0.4, 1]]
  reasons = [["stop"] * 6, ["length", "stop", "stop"]]
  rows, st = select_samples(recs, texts, scores, keep_per_prompt=2, finish_reasons=reasons)
  # a: CLEAN kept; MIXED filtered; CLEAN + spaces is a duplicate; sample 3 kept; sample 4 over the cap.
  assert [(r["id"], r["response"]) for r in rows] == [("rejection/a/0", CLEAN), ("rejection/a/3", texts[0][3])]
  assert rows[0] == {"prompt": "2+2?", "response": CLEAN, "answer": "4", "task": "arithmetic", "language": "en",
                     "source": "rejection", "id": "rejection/a/0"}
  expect = {"prompts": 2, "completions": 9, "correct": 7, "kept": 2, "prompts_with_kept": 1,
            "dropped/incorrect": 2, "dropped/truncated": 1, "dropped/filtered": 2, "dropped/duplicate": 1,
            "dropped/over_keep_limit": 1, "filter/mixed_language": 1, "filter/no_think": 1}
  for k, v in expect.items():
    assert st[k] == v, k
  assert st["acceptance_rate"] == pytest.approx(2 / 9) and st["prompt_coverage"] == 0.5
  assert st["mean_response_chars"] == pytest.approx((len(CLEAN) + len(texts[0][3])) / 2)
  # Truncated completions can be allowed explicitly.
  rows2, _ = select_samples(recs, texts, scores, keep_per_prompt=2, finish_reasons=reasons, drop_truncated=False)
  assert [r["id"] for r in rows2] == ["rejection/a/0", "rejection/a/3", "rejection/b/0"]


def test_select_samples_matches_brute_force_on_random_batches():
  rng = np.random.default_rng(0)
  pool = [CLEAN, MIXED, _cot("2 + 2 = 4."), _cot("x " * 400), _cot("```\n4\n```"), "no tags", _cot("Four."),
          _cot("Four,  surely."), _cot("Adding: 4."), _cot("2 and 2 make 4.")]
  filters = FilterConfig(max_paragraph_chars=500)
  over_cap = 0
  for trial in range(60):
    n, k, keep = int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(1, 4))
    recs = [{"prompt": f"p{i}", "answer": "4", "id": f"t{trial}-{i}"} for i in range(n)]
    texts = [[pool[int(rng.integers(len(pool)))] for _ in range(k)] for _ in range(n)]
    scores = rng.choice([0.0, 0.49, 0.5, 1.0, np.nan], size=(n, k))
    reasons = rng.choice(["stop", "length"], size=(n, k), p=[0.8, 0.2]).tolist()
    rows, st = select_samples(recs, texts, scores, keep_per_prompt=keep, finish_reasons=reasons, filters=filters)
    got = [(r["id"].split("/")[1], int(r["id"].split("/")[2]), r["response"]) for r in rows]
    assert got == _reference_select(recs, texts, scores, reasons, keep, filters)
    assert st["kept"] + sum(st[f"dropped/{r}"] for r in rejection.DROP_REASONS) == n * k
    assert st["correct"] == int(np.sum(scores >= 0.5))
    per_prompt = {}
    for r in rows:
      per_prompt.setdefault(r["prompt"], []).append(" ".join(r["response"].split()))
    assert all(len(v) <= keep and len(set(v)) == len(v) for v in per_prompt.values())
    over_cap += st["dropped/over_keep_limit"]
  assert over_cap > 0  # the cap was exercised


def test_select_samples_rejects_misaligned_inputs():
  recs = [{"prompt": "p", "answer": "a", "id": 0}]
  with pytest.raises(ValueError, match="aligned"):
    select_samples(recs, [["x"], ["y"]], [[1.0]], keep_per_prompt=1)
  with pytest.raises(ValueError, match="1 completions but 2 scores"):
    select_samples(recs, [["x"]], [[1.0, 0.0]], keep_per_prompt=1)
  with pytest.raises(ValueError, match="keep_per_prompt"):
    select_samples(recs, [["x"]], [[1.0]], keep_per_prompt=0)
  with pytest.raises(ValueError, match="record 0: language"):
    select_samples([{**recs[0], "language": "klingon"}], [["x"]], [[1.0]], keep_per_prompt=1)


# ------------------------------------------------------------------------------- mix + output


def test_mix_with_non_reasoning_ratio_and_determinism():
  reasoning = [{"id": f"r{i}", "source": "rejection"} for i in range(30)]
  other = [{"id": f"n{i}"} for i in range(50)]
  mixed = mix_with_non_reasoning(reasoning, other, ratio=3.0, seed=1)
  assert len(mixed) == 40
  assert sorted(r["id"] for r in mixed if r["source"] == "rejection") == sorted(r["id"] for r in reasoning)
  picked = [r["id"] for r in mixed if r["source"] == "non_reasoning"]
  assert len(picked) == 10 and len(set(picked)) == 10 and set(picked) <= {r["id"] for r in other}
  assert mixed == mix_with_non_reasoning(reasoning, other, ratio=3.0, seed=1)
  assert [r["id"] for r in mixed] != [r["id"] for r in mix_with_non_reasoning(reasoning, other, 3.0, seed=2)]
  assert [r["id"] for r in mixed[:10]] != [r["id"] for r in reasoning[:10]]  # shuffled together
  assert "source" not in other[0]  # inputs are not modified
  assert len(mix_with_non_reasoning(reasoning, other, ratio=7.0)) == 30 + round(30 / 7)
  assert len(mix_with_non_reasoning(reasoning, other, ratio=math.inf)) == 30
  assert len(mix_with_non_reasoning(reasoning, other[:4], ratio=1.0)) == 34  # all 4 used (warned)
  with pytest.raises(ValueError, match="ratio must be > 0"):
    mix_with_non_reasoning(reasoning, other, ratio=0.0)


@pytest.mark.parametrize("fmt", ["jsonl", "arrayrecord"])
def test_write_dataset_round_trip(tmp_path, fmt):
  import grain

  rows = [{"prompt": f"问题 {i}", "response": _cot(f"step {i}"), "answer": {"target": i, "numbers": [1, 2]},
           "task": "countdown", "language": "en", "source": "rejection", "id": f"rejection/{i}/0", "_loc": "x:1"}
          for i in range(5)]
  path = str(tmp_path / "sub" / f"rs.{fmt}")
  assert write_dataset(rows, path, fmt=fmt) == 5
  assert not os.path.exists(path + ".tmp")
  if fmt == "jsonl":
    back = [json.loads(line) for line in open(path, encoding="utf-8")]
  else:
    src = grain.sources.ArrayRecordDataSource([path])
    back = [json.loads(src[i]) for i in range(len(src))]
  assert back == [{k: v for k, v in r.items() if k != "_loc"} for r in rows]
  # The SFT stage reads it as is.
  sft = open_source(DatasetSpec(paths=(path,), kind="sft"))
  assert [(sft[i]["prompt"], sft[i]["response"]) for i in range(len(sft))] == [(r["prompt"], r["response"]) for r in rows]
  with pytest.raises(ValueError, match="fmt must be one of"):
    write_dataset(rows, path, fmt="parquet")


# ------------------------------------------------------------------ tiny model and tokenizer


@pytest.fixture(scope="module")
def tokenizer():
  from r1jax.data.tokenizer import train_sentencepiece

  lines = [r["prompt"] + "\n" + r["response"] for r in corpora.cold_start_corpus(60, seed=0)]
  lines += [r["prompt"] for r in corpora.instruction_corpus(60, seed=0)]
  return train_sentencepiece(lines, vocab_size=400)


@pytest.fixture(scope="module")
def model(tokenizer):
  return random_model(tokenizer.vocab_size)


def _parity(text: str) -> bool:
  return sum(map(ord, text)) % 2 == 0


def _parity_verify(completion, answer) -> float:
  return float(_parity(completion))


class RecordingSampler:
  """Passes calls through and keeps (prompts, result) so the test sees what was sampled."""

  def __init__(self, inner):
    self.inner, self.calls = inner, []

  def generate(self, params, prompts, sampling, **kw):
    out = self.inner.generate(params, prompts, sampling, **kw)
    self.calls.append((prompts, out))
    return out


def test_generate_and_select_keeps_exactly_the_correct_completions(tokenizer, model):
  recs = [{"prompt": f"What is {i} + {i}?", "answer": f"ans-{i}", "task": "arithmetic", "id": f"q{i}"}
          for i in range(8)]
  seen = []

  def reward(texts, answers, metadata):
    # Gold answers and metadata travel with every completion (never inferred from order).
    for a, m in zip(answers, metadata):
      assert a == f"ans-{m['id'][1:]}"
    seen.extend(texts)
    return RewardOutput(scores=np.array([float(_parity(t)) for t in texts], np.float32))

  graphdef, params = nnx.split(model)
  sampler = RecordingSampler(Sampler(graphdef, model.cfg))
  template = templates.PromptTemplate(name="r1", generation_prefix="<think>\n")
  loose = FilterConfig(min_language_consistency=0.0, max_paragraph_chars=0, allow_code_blocks=True,
                       require_think=False)
  rows, st = rejection.generate_and_select(
      sampler, params, tokenizer, template, recs, reward, k=4, keep_per_prompt=2, temperature=1.0, top_p=1.0,
      max_new_tokens=12, stop_token_ids=tokenizer.stop_ids, seed=5, batch_prompts=4, filters=loose,
      drop_truncated=False)
  assert len(sampler.calls) == 2  # 8 prompts in chunks of 4
  # The reference: decode what the sampler returned, mark by parity, dedup, cap at 2 per prompt.
  expected, texts_all, n_correct = [], [], 0
  for c, (_, gen) in enumerate(sampler.calls):
    chunk = recs[c * 4:(c + 1) * 4]
    for q, rec in enumerate(chunk):
      kept_q = []
      for j in range(4):
        r = q * 4 + j
        ids = gen.tokens[r, :gen.lengths[r]].tolist()
        if gen.finish_reasons[r] == "stop":
          assert ids[-1] in tokenizer.stop_ids
          ids = ids[:-1]
        text = "<think>\n" + tokenizer.decode(ids, skip_special=True)
        texts_all.append(text)
        n_correct += _parity(text)
        if _parity(text) and text not in kept_q and len(kept_q) < 2:
          kept_q.append(text)
          expected.append((rec["id"], j, text))
  assert seen == texts_all
  assert 0 < n_correct < len(texts_all)
  assert [(r["id"].split("/")[1], int(r["id"].split("/")[2]), r["response"]) for r in rows] == expected
  assert all(r["prompt"] == recs[int(r["id"].split("/")[1][1:])]["prompt"] for r in rows)
  assert st["completions"] == 32 and st["correct"] == n_correct and st["kept"] == len(expected)
  assert st["completion_tokens"] == sum(int(g.lengths.sum()) for _, g in sampler.calls)
  assert st["acceptance_rate"] == pytest.approx(len(expected) / 32)

  # A near-zero temperature (the same compiled program) gives k identical completions: each prompt
  # keeps one, the rest are duplicates.
  rows_g, st_g = rejection.generate_and_select(
      sampler, params, tokenizer, template, recs, lambda t, a, m: np.ones(len(t)), k=4, keep_per_prompt=3,
      temperature=1e-4, top_p=1.0, max_new_tokens=12, stop_token_ids=tokenizer.stop_ids, batch_prompts=4,
      filters=loose, drop_truncated=False)
  assert len(rows_g) == 8 and st_g["dropped/duplicate"] == 24


class FakeSampler:
  """Returns fixed completions (prompt-major, n per prompt) as a GenerationResult."""

  def __init__(self, completions, reasons):
    self.completions, self.reasons = completions, reasons

  def generate(self, params, prompts, sampling, **kw):
    from r1jax.sampling import GenerationResult

    n = len(prompts) * sampling.n
    assert len(self.completions) == n
    width = max(len(c) for c in self.completions)
    tokens = np.zeros((n, width), np.int32)
    for r, c in enumerate(self.completions):
      tokens[r, :len(c)] = c
    lengths = np.array([len(c) for c in self.completions], np.int32)
    return GenerationResult(tokens, lengths, list(self.reasons), np.zeros((n, width), np.float32), None,
                            np.repeat(np.arange(len(prompts), dtype=np.int32), sampling.n), {})


def test_generate_and_select_strips_the_stop_token_and_never_keeps_out_of_vocabulary_ids(tokenizer):
  ans_end = tokenizer.answer_end_id
  body = tokenizer.encode("4 <answer>4")
  eos, vocab = tokenizer.eos_id, tokenizer.vocab_size
  completions = [body + [ans_end],        # stopped at </answer>: content, kept in the text
                 body + [ans_end, eos],   # stopped at EOS: removed (SFT appends its own)
                 body + [vocab + 3, ans_end],  # an id of a padded embedding row: never kept
                 body]                    # cut at the token limit
  sampler = FakeSampler(completions, ["stop", "stop", "stop", "length"])
  template = templates.PromptTemplate(name="r1", generation_prefix="<think>\n")
  loose = FilterConfig(min_language_consistency=0.0, max_paragraph_chars=0, require_think=False)
  got = {}

  def reward(texts, answers, metadata):
    got["texts"] = texts
    return RewardOutput(scores=np.ones(len(texts), np.float32))

  rows, st = rejection.generate_and_select(
      sampler, None, tokenizer, template, [{"prompt": "2+2?", "answer": "4", "id": "p"}], reward, k=4,
      keep_per_prompt=4, stop_token_ids=(eos, ans_end), filters=loose)
  assert got["texts"][0] == "<think>\n4 <answer>4</answer>"
  assert got["texts"][1] == "<think>\n4 <answer>4</answer>"
  assert [r["id"] for r in rows] == ["rejection/p/0"]  # 1 is a duplicate of 0, 2 invalid, 3 truncated
  assert (st["invalid_token_rows"], st["dropped/incorrect"], st["dropped/duplicate"], st["dropped/truncated"]) == \
      (1, 1, 1, 1)
  assert st["completion_tokens"] == sum(map(len, completions)) and st["finished"] == 3


# --------------------------------------------------------------------------------- the stage


def _experiment():
  spec = importlib.util.spec_from_file_location("rejection_sft_experiment",
                                                os.path.join(ROOT, "experiments", "rejection_sft.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _micro_config(ckpt: str):
  from r1jax.data import tasks

  register_verifier(PARITY_REWARD)(_parity_verify)
  assert PARITY_REWARD not in tasks.REASONING_TASKS
  cfg = _experiment().get_config("tiny")
  cfg.model.preset = ""
  cfg.model.init_from = ckpt
  cfg.tokenizer.train_corpus = ""
  cfg.progress = False
  cfg.data.task.n = 4  # x 2 tasks = 8 prompts
  cfg.sampling.update(dict(k=4, max_new_tokens=12, batch_prompts=4, temperature=1.0, top_p=1.0))
  cfg.rejection.update(dict(reward=PARITY_REWARD, keep_per_prompt=2, drop_truncated=False, shard_prompts=4))
  cfg.filters.update(dict(min_language_consistency=0.0, max_paragraph_chars=0, allow_code_blocks=True,
                          require_think=False))
  cfg.output.arrayrecord = True
  return cfg


def test_run_rejection_end_to_end_skip_and_resume(tmp_path, tokenizer, model):
  import grain

  from r1jax.convert.hf import save_hf_model
  from r1jax.train.rejection_stage import dataset_path
  from r1jax.train.stages import run_stage as run_rejection  # validates, then runs the stage

  ckpt = str(tmp_path / "rl_final")
  save_hf_model(model, ckpt)
  tokenizer.save(os.path.join(ckpt, "tokenizer.model"))
  cfg = _micro_config(ckpt)
  workdir = str(tmp_path / "rs")
  out = run_rejection(cfg, workdir)

  path = dataset_path(workdir)
  rows = [json.loads(line) for line in open(path, encoding="utf-8")]
  reasoning = [r for r in rows if r["source"] == "rejection"]
  other = [r for r in rows if r["source"] != "rejection"]
  assert not out["skipped"] and out["shards"] == 2 and out["prompts"] == 8 and out["completions"] == 32
  assert 0 < len(reasoning) == out["kept"] == out["rows/reasoning"] <= 16
  assert len(other) == out["rows/non_reasoning"] == round(len(reasoning) / 3)
  assert all(r["task"] == "instruction" for r in other)
  assert all(_parity(r["response"]) for r in reasoning)
  assert out["correct"] == out["completions"] - out["dropped/incorrect"] and out["correct"] >= out["kept"]
  per_prompt = {}
  for r in reasoning:
    assert r["task"] in ("countdown", "arithmetic") and r["answer"] is not None
    per_prompt.setdefault(r["prompt"], []).append(r["response"])
  assert all(len(v) <= 2 and len(set(v)) == len(v) for v in per_prompt.values())
  stats = json.load(open(os.path.join(workdir, "stats.json")))
  assert stats["rows/total"] == len(rows) and stats["kept"] == out["kept"]
  src = grain.sources.ArrayRecordDataSource([dataset_path(workdir, "arrayrecord")])
  assert [json.loads(src[i]) for i in range(len(src))] == rows
  metrics = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert metrics[-1]["kept"] == out["kept"] and metrics[-1]["acceptance_rate"] == pytest.approx(out["acceptance_rate"])

  # A finished run is skipped: nothing is sampled or rewritten.
  content, mtime = open(path, "rb").read(), os.path.getmtime(path)
  again = run_rejection(cfg, workdir)
  assert again["skipped"] and again["kept"] == out["kept"] and os.path.getmtime(path) == mtime

  # Interrupted after shard 0: the rerun redoes shard 1 only and writes the identical dataset.
  os.remove(path)
  os.remove(os.path.join(workdir, "data", "parts", "shard_00001.stats.json"))
  shard0 = os.path.join(workdir, "data", "parts", "shard_00000.jsonl")
  shard0_mtime = os.path.getmtime(shard0)
  resumed = run_rejection(cfg, workdir)
  assert not resumed["skipped"] and open(path, "rb").read() == content
  assert os.path.getmtime(shard0) == shard0_mtime


def test_run_rejection_config_errors_name_the_key(tmp_path, tokenizer, model):
  from r1jax.convert.hf import save_hf_model
  from r1jax.train.config_check import ConfigError
  from r1jax.train.rejection_stage import check_rejection_config, source_tag

  ckpt = str(tmp_path / "ckpt")
  save_hf_model(model, ckpt)
  base = _micro_config(ckpt)
  check_rejection_config(base)
  assert source_tag(base) == "rejection"
  base.stage = "distillation"
  assert source_tag(base) == "distillation"
  cases = [("rejection.keep_per_prompt", 5, "config.rejection.keep_per_prompt=5 exceeds sampling.k=4"),
           ("data.task.name", "countdown,chess", "config.data.task.name: unknown task 'chess'"),
           ("sampling.top_p", 0.0, "config.sampling.top_p"),
           ("filters.language", "xx", "config.filters: FilterConfig.language"),
           ("mix.corpus", "nope", "config.mix.corpus: unknown corpus 'nope'"),
           ("rejection.reward", "nope", "config.rejection.reward: unknown reward 'nope'"),
           ("model.init_from", str(tmp_path), "config.model.init_from")]
  for key, value, message in cases:
    cfg = _micro_config(ckpt)
    section, name = key.rsplit(".", 1)
    sub = cfg
    for part in section.split("."):
      sub = sub[part]
    sub[name] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
      check_rejection_config(cfg)
  for preset in ("tiny", "qwen2.5-math-1.5b"):
    cfg = _experiment().get_config(preset)
    assert cfg.kind == "rejection" and cfg.data.kind == "rl" and cfg.mix.ratio == 3.0
  with pytest.raises(ValueError, match="unknown argument"):
    _experiment().get_config("gpt-9")
