"""The chained R1 pipeline, shrunk to a smoke run on 2 JAX processes: every stage runs from the
previous one's export, the evaluation table has one column per checkpoint, and a re-run skips
finished stages."""
import json
import os

import pytest

from r1jax.train.pipeline import apply_overrides, resolve
from tests.processes import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MICRO = (("train.steps", 2), ("train.rollouts", 1), ("train.checkpoint_every", 1), ("data.corpus_size", 64),
         ("grpo.max_completion_length", 8), ("grpo.num_generations", 2), ("grpo.prompts_per_step", 2),
         ("grpo.num_minibatches", 2), ("data.batch_size", 4), ("data.task.n", 8), ("sampling.k", 2),
         ("sampling.max_new_tokens", 8), ("rejection.shard_prompts", 8), ("eval.n", 2), ("eval.k", 2),
         ("eval.max_new_tokens", 8), ("data.seq_len", 128), ("train.progress", False), ("train.plots", False),
         ("tokenizer.vocab_size", 1024), ("grpo.dynamic_sampling_max_draws", 2),
         # A two-step model solves nothing: accept every sample so the later stages get data.
         ("rejection.correct_threshold", 0.0), ("rejection.drop_truncated", False),
         ("filters.require_think", False), ("filters.min_language_consistency", 0.0))


def test_references_and_overrides():
  dirs = {"base": "/r/base"}
  assert resolve("{base}", dirs) == "/r/base/final"
  assert resolve(("{base:dir}/x.jsonl",), dirs) == ("/r/base/x.jsonl",)
  with pytest.raises(KeyError, match="before that stage ran"):
    resolve("{later}", dirs)
  import ml_collections

  c = ml_collections.ConfigDict({"a": {"b": 1}})
  apply_overrides(c, {"a.b": 2}, "t")
  assert c.a.b == 2
  with pytest.raises(KeyError, match="no field 'zz'"):
    apply_overrides(c, {"a.zz": 1}, "t")
  apply_overrides(c, {"a.zz": 1}, "t", strict=False)  # common overrides skip missing fields
  assert "zz" not in c.a


def test_pipeline_seed_offsets_stage_seeds_only():
  import ml_collections

  from r1jax.train.pipeline import _offset_seeds

  c = ml_collections.ConfigDict({"seed": 3, "data": {"seed": 5}, "eval": {"seed": 1234}})
  _offset_seeds(c, 0)
  assert (c.seed, c.data.seed) == (3, 5)
  _offset_seeds(c, 2)
  assert (c.seed, c.data.seed, c.eval.seed) == (5, 7, 1234)  # held-out problems stay the same


def test_seed_table_is_mean_and_standard_error_over_runs(tmp_path):
  import numpy as np

  from r1jax.eval.report import EvalResult, write_json
  from r1jax.eval.seeds import main, seed_table

  runs = []
  for i, (a, b) in enumerate([(0.5, 0.1), (0.6, 0.2), (0.7, 0.0)]):
    run = [EvalResult("addition", "cold", a, 128, 4, cons_at_k=a), EvalResult("addition", "rl", b, 128, 4,
                                                                               cons_at_k=b)]
    write_json(run, tmp_path / f"s{i}" / "evaluate" / "eval_results.json")
    runs.append(run)
  table = seed_table(runs, ["a", "b", "c"])
  se = 100 * np.std([0.5, 0.6, 0.7], ddof=1) / np.sqrt(3)
  assert f"| addition (pass@1) | 60.0 ± {se:.1f} | 10.0 ± 5.8 |" in table
  assert main([str(tmp_path / f"s{i}") for i in range(3)]) == 0
  # Paired gains need per-problem scores.
  from r1jax.eval.seeds import gain_table

  paired = [[EvalResult("addition", "cold-start", 0.5, 4, 1, per_problem=[0.0, 1.0, 1.0, 0.0]),
             EvalResult("addition", "reasoning-rl", 0.75, 4, 1, per_problem=[1.0, 1.0, 1.0, 0.0])]] * 2
  d_se = 100 * np.std([1.0, 0, 0, 0], ddof=1) / 2
  assert f"| addition: reasoning-rl − cold-start | +25.0 ± {d_se:.1f} | +25.0 ± {d_se:.1f} | +25.0 ± 0.0 |" \
      in gain_table(paired)
  with pytest.raises(ValueError, match="no result"):
    seed_table([runs[0], runs[1][:1]], ["a", "b"])


@pytest.mark.slow
def test_pipeline_smoke_run_and_skip(tmp_path):
  exp = tmp_path / "micro_pipeline.py"
  exp.write_text(
      "import importlib.util, os\n"
      f"spec = importlib.util.spec_from_file_location('p', {os.path.join(ROOT, 'experiments', 'r1_pipeline.py')!r})\n"
      "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
      "def get_config(arg='tiny'):\n"
      "  c = m.get_config(arg)\n"
      f"  c.experiments_dir = {os.path.join(ROOT, 'experiments')!r}\n"
      f"  c.common_overrides = {MICRO!r}\n"
      "  return c\n")
  wd = str(tmp_path / "run")
  # On 2 JAX processes (one CPU device each, Gloo): the multi-host path of every stage kind, chained.
  run_cli(f"{exp}:tiny", wd, processes=2, devices=2, timeout=1200)
  stages = [line.split("\t")[0] for line in open(os.path.join(wd, "timings.tsv"))]
  assert stages == ["base", "r1_zero", "cold_start", "reasoning_rl", "rejection", "rejection_sft",
                    "helpfulness_rm", "safety_rm", "all_scenario_rl", "student_base", "student_distill",
                    "student_rl", "evaluate"]
  # Stage 4 was scored by both reward models (on the general prompts) and the rule rewards.
  rows = [json.loads(line) for line in open(os.path.join(wd, "all_scenario_rl", "metrics.jsonl"))]
  keys = set().union(*rows)
  assert {"reward/helpfulness_rm/rows", "reward/safety_rm/rows", "reward/accuracy/rows"} <= keys, sorted(keys)
  # Held-out curves start at the initialisation (rollout 0), before any update.
  rl_rows = [json.loads(line) for line in open(os.path.join(wd, "reasoning_rl", "metrics.jsonl"))]
  assert rl_rows[0]["rollout"] == 0 and rl_rows[0]["step"] == 0 and "eval/pass@1_se" in rl_rows[0]
  results = json.load(open(os.path.join(wd, "evaluate", "eval_results.json")))["results"]
  labels = {r["label"] for r in results}
  assert labels == {"base", "r1-zero", "cold-start", "reasoning-rl", "rejection-sft", "r1", "student-distilled",
                    "student-rl-only"}
  header = open(os.path.join(wd, "evaluate", "eval_table.md")).readline()
  assert header.index("base") < header.index("r1-zero") < header.index("student-rl-only")
  # The student really is smaller and shares the base tokenizer.
  student = json.load(open(os.path.join(wd, "student_base", "final", "config.json")))
  base = json.load(open(os.path.join(wd, "base", "final", "config.json")))
  assert student["hidden_size"] < base["hidden_size"] and student["vocab_size"] == base["vocab_size"]
  # Metrics are written once (by process 0), not once per process.
  steps = [json.loads(line)["step"] for line in open(os.path.join(wd, "base", "metrics.jsonl"))]
  assert steps == sorted(set(steps)), steps
  # Re-running (here on 1 process) skips every finished stage.
  run_cli(f"{exp}:tiny", wd, processes=1, devices=1, timeout=300)
  assert len(open(os.path.join(wd, "timings.tsv")).readlines()) == len(stages)
