"""Stages across real processes: 2 JAX processes x 2 CPU devices over Gloo (the multi-host code
path of a TPU VM slice or a GPU cluster), against 1 process x 4 devices on the same global mesh.

- GRPO (R1-Zero, micro): 3 rollouts on 2 processes (each grading half the rows) end with the
  parameters and reward metrics of 3 rollouts on 1 process; a checkpoint written by 2 processes resumes in 1, and one written by 1 resumes in 2.
- SFT (cold start, micro, unpacked rows so both runs see the same global batches): 3 steps on 2
  processes equal 3 steps on 1.
- The 2-process export is one HF directory that `transformers` loads, with r1jax's logits.
"""
import json
import os

import numpy as np
import pytest

from tests.processes import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RL_MICRO = ["--config.train.eval_every=0", "--config.train.plots=False", "--config.grpo.max_completion_length=12",
            "--config.grpo.num_generations=4", "--config.grpo.prompts_per_step=2", "--config.grpo.num_minibatches=2",
            "--config.grpo.logprob_chunk_size=64", "--config.train.checkpoint_every=1", "--config.train.progress=False",
            # 8-row minibatches accumulated over 2 micro-batches (the reference pass in 4)
            "--config.grpo.micro_batch_size=4"]
# Rows of up to 512 tokens: none is filtered out, so the two processes' strided shards together are
# exactly the one process's global batches (a filtered row would shift one shard).
SFT_MICRO = ["--config.train.log_every=1", "--config.data.batch_size=4", "--config.data.seq_len=512",
             "--config.data.corpus_size=64", "--config.tokenizer.vocab_size=400", "--config.data.pack=False",
             "--config.train.logprob_chunk_size=128", "--config.train.progress=False"]
TOL = 1e-5


def _run(config: str, workdir: str, flags, *, processes: int, cache: str, timeout: int = 600) -> float:
  """Runs the CLI on `processes` processes (4 CPU devices in all); returns the wall time."""
  return run_cli(os.path.join(ROOT, "experiments", config), workdir, flags, processes=processes, cache=cache,
                 timeout=timeout)[0]


def _params(workdir):
  from safetensors.numpy import load_file

  return load_file(os.path.join(workdir, "final", "model.safetensors"))


def _max_diff(a, b) -> float:
  assert a.keys() == b.keys()
  return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("jax_cache"))


@pytest.mark.slow
def test_grpo_on_two_processes_equals_one_and_resumes_across_process_counts(tmp_path, cache):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  t1 = _run("r1_zero.py:tiny", one, ["--config.train.rollouts=3", *RL_MICRO], processes=1, cache=cache)
  t2 = _run("r1_zero.py:tiny", two, ["--config.train.rollouts=3", *RL_MICRO], processes=2, cache=cache)
  reference = _params(one)
  assert _max_diff(reference, _params(two)) <= TOL
  # Rule rewards were graded one slice per process and gathered: the same rewards and counts.
  rows = lambda wd: [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
  for a, b in zip(rows(one), rows(two), strict=True):
    for key in a:
      if key.startswith("reward/") and not key.endswith(("seconds", "/graded")):
        assert b[key] == pytest.approx(a[key], abs=1e-6), key
  print(f"GRPO 3 rollouts: 1 process {t1:.1f} s, 2 processes {t2:.1f} s (wall, compile included)")
  # 2 processes write rollouts 1-2, 1 process resumes for rollout 3; and the other way round.
  for first, then, name in ((2, 1, "two_then_one"), (1, 2, "one_then_two")):
    wd = str(tmp_path / name)
    _run("r1_zero.py:tiny", wd, ["--config.train.rollouts=2", *RL_MICRO], processes=first, cache=cache)
    _run("r1_zero.py:tiny", wd, ["--config.train.rollouts=3", *RL_MICRO], processes=then, cache=cache)
    assert _max_diff(reference, _params(wd)) <= TOL, name


@pytest.mark.slow
def test_sft_on_two_processes_equals_one_and_its_export_loads_in_transformers(tmp_path, cache):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  flags = ["--config.train.steps=3", "--config.train.checkpoint_every=3", *SFT_MICRO]
  _run("cold_start.py:tiny", one, flags, processes=1, cache=cache)
  _run("cold_start.py:tiny", two, flags, processes=2, cache=cache)
  assert _max_diff(_params(one), _params(two)) <= TOL

  import torch
  import transformers

  from r1jax.convert.hf import load_hf_model

  final = os.path.join(two, "final")
  _, model = load_hf_model(final)
  tokens = np.arange(1, 17, dtype=np.int32)[None] % model.cfg.vocab_size
  ours = np.asarray(model(tokens).logits, np.float64)
  hf = transformers.AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).eval()
  with torch.no_grad():
    theirs = hf(torch.as_tensor(tokens, dtype=torch.long)).logits.numpy().astype(np.float64)
  np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=2e-4)


@pytest.mark.slow
def test_sampling_and_reward_model_stages_on_two_processes_match_one(tmp_path, cache):
  """Rejection sampling and evaluation (the sampler on the global batch, writes by process 0) give
  the very dataset and table of one process; a reward model trains and exports on two."""

  ckpt_dir = str(tmp_path / "policy")
  _run("cold_start.py:tiny", ckpt_dir, ["--config.train.steps=2", *SFT_MICRO], processes=1, cache=cache)
  ckpt = os.path.join(ckpt_dir, "final")
  rejection = ["--config.model.preset=", f"--config.model.init_from={ckpt}", "--config.tokenizer.train_corpus=",
               "--config.progress=False", "--config.data.task.n=4", "--config.sampling.k=2",
               "--config.sampling.max_new_tokens=16", "--config.sampling.batch_prompts=4",
               "--config.rejection.shard_prompts=4", "--config.rejection.min_kept=0", "--config.mix.ratio=1.0"]
  evaluate = [f"--config.checkpoints=policy={ckpt}", "--config.eval.tasks=addition", "--config.eval.n=4",
              "--config.eval.k=2", "--config.eval.max_new_tokens=16"]
  out = {}
  for n in (1, 2):
    _run("rejection_sft.py:tiny", str(tmp_path / f"rejection{n}"), rejection, processes=n, cache=cache)
    _run("evaluate.py:tiny", str(tmp_path / f"eval{n}"), evaluate, processes=n, cache=cache)
    stats = json.load(open(tmp_path / f"rejection{n}" / "stats.json"))
    out[n] = (open(tmp_path / f"rejection{n}" / "data" / "rejection_sft.jsonl").read(),
              {k: stats[k] for k in ("completions", "correct", "kept")},
              open(tmp_path / f"eval{n}" / "eval_table.md").read())
  assert out[1][1]["completions"] == 16
  assert out[1] == out[2]

  rm = str(tmp_path / "rm")
  _run("reward_model.py:tiny", rm, [f"--config.model.init_from={ckpt}", "--config.model.preset=",
                                    "--config.train.steps=3", "--config.train.log_every=1",
                                    "--config.data.corpus_size=48", "--config.data.batch_size=4",
                                    "--config.data.max_len=160", "--config.rm.eval_fraction=0.25",
                                    "--config.rm.eval_batch_size=8", "--config.train.progress=False"],
       processes=2, cache=cache)
  from r1jax.rewards.model import load_reward_model

  result = json.load(open(os.path.join(rm, "eval.json")))
  assert result["steps"] == 3 and np.isfinite(result["eval/loss"]) and result["eval/count"] == 12
  assert load_reward_model(os.path.join(rm, "final")).kind == "helpfulness"
