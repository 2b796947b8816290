"""Stage runners end to end through the CLI (subprocesses, so kill -9 is real).

- SFT: N steps straight == k steps + kill -9 + resume + (N - k) steps, identical parameters.
- GRPO (R1-Zero, micro): 2 rollouts straight == 1 rollout + resume + 1, identical parameters;
  metrics, plots and the HF-format export are written.
- Config errors name the key.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SFT_MICRO = ["--config.train.log_every=1", "--config.data.batch_size=4", "--config.data.seq_len=128",
             "--config.data.corpus_size=64", "--config.tokenizer.vocab_size=400",
             "--config.train.logprob_chunk_size=128", "--config.train.progress=False"]
RL_MICRO = ["--config.train.eval_every=0", "--config.train.plots=True", "--config.grpo.max_completion_length=12",
            "--config.grpo.num_generations=4", "--config.grpo.prompts_per_step=2", "--config.grpo.num_minibatches=2",
            "--config.data.batch_size=4", "--config.grpo.logprob_chunk_size=64",
            "--config.train.checkpoint_every=1"]


def _env():
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one CPU device: the stage code must not depend on a mesh size
  env["PYTHONPATH"] = ROOT
  return env


def _cli(config, workdir, *flags, cache=None):
  cmd = [sys.executable, "-m", "r1jax", f"--config={config}", f"--workdir={workdir}", *flags]
  if cache:
    cmd.append(f"--config.compilation_cache_dir={cache}")
  return cmd


def _run(cmd, timeout=600):
  p = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
  assert p.returncode == 0, p.stderr[-4000:]
  return p


def _params(workdir):
  from safetensors.numpy import load_file

  return load_file(os.path.join(workdir, "final", "model.safetensors"))


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.slow
def test_sft_kill_and_resume_equals_straight_run(tmp_path):
  cfg = os.path.join(ROOT, "experiments", "cold_start.py:tiny")
  cache = str(tmp_path / "cache")
  N = 6
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  _run(_cli(cfg, straight, f"--config.train.steps={N}", "--config.train.checkpoint_every=2", *SFT_MICRO, cache=cache))

  # Same run, SIGKILLed right after step 3 (step 2's async checkpoint may still be in flight).
  p = subprocess.run(_cli(cfg, killed, f"--config.train.steps={N}", "--config.train.checkpoint_every=2",
                          *SFT_MICRO, cache=cache), cwd=ROOT, env={**_env(), "R1JAX_KILL_AFTER_STEP": "3"},
                     capture_output=True, text=True, timeout=600)
  assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-2000:])
  assert not os.path.exists(os.path.join(killed, "final"))
  _run(_cli(cfg, killed, f"--config.train.steps={N}", "--config.train.checkpoint_every=2", *SFT_MICRO, cache=cache))
  _assert_same(_params(straight), _params(killed))
  rows = [json.loads(l) for l in open(os.path.join(killed, "metrics.jsonl"))]
  assert rows[-1]["step"] == N and np.isfinite(rows[-1]["train/loss"])


@pytest.mark.slow
def test_r1_zero_micro_run_resumes_exactly_and_writes_artifacts(tmp_path):
  cfg = os.path.join(ROOT, "experiments", "r1_zero.py:tiny")
  cache = str(tmp_path / "cache")
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  _run(_cli(cfg, straight, "--config.train.rollouts=2", *RL_MICRO, cache=cache))
  # Killed (kill -9) right after rollout 1, then resumed.
  p = subprocess.run(_cli(cfg, resumed, "--config.train.rollouts=2", *RL_MICRO, cache=cache), cwd=ROOT,
                     env={**_env(), "R1JAX_KILL_AFTER_STEP": "1"}, capture_output=True, text=True, timeout=600)
  assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-2000:])
  # The resumed run's rollout 2 decodes 4 rows at a time with slot refill (the straight run's: all
  # 16 at once): the same samples, so the same parameters, bit for bit.
  _run(_cli(cfg, resumed, "--config.train.rollouts=2", *RL_MICRO, "--config.sampling.num_slots=4", cache=cache))
  _assert_same(_params(straight), _params(resumed))
  rows = [json.loads(l) for l in open(os.path.join(straight, "metrics.jsonl"))]
  assert [r["rollout"] for r in rows] == [1, 2]
  for key in ("reward/mean", "train/kl_mean", "train/clip_frac_low", "train/clip_frac_high", "train/entropy_mean",
              "train/ratio_min", "train/ratio_max", "rollout/frac_zero_std_groups", "rollout/truncated_fraction",
              "train/skipped_nonfinite", "train/nonfinite_total", "rollout/dynamic/draws",
              "rollout/dynamic/informative_fraction", "rollout/response_length/mean", "time/generate",
              "rollout/tokens_per_s_per_device", "rollout/reflection/wait"):
    assert key in rows[-1], key
  # The metrics contract: every metric in a namespace, the mean reward logged once.
  namespaces = ("reward/", "rollout/", "train/", "time/", "eval/")
  assert all(k in ("step", "time", "rollout") or k.startswith(namespaces) for k in rows[-1]), sorted(rows[-1])
  assert [k for k in rows[-1] if k.endswith("reward_mean") or k == "reward/total/mean"] == []
  assert rows[-1]["step"] == 4  # 2 rollouts x 2 minibatches
  assert any(k.startswith("rollout/response_length/") and k.endswith("correct") for k in rows[-1])  # by correctness
  assert os.path.exists(os.path.join(straight, "plots", "response_length.png"))
  assert os.path.exists(os.path.join(straight, "tb"))
  # The export is a real HF checkpoint r1jax (and transformers) can load.
  from r1jax.convert.hf import load_hf_model

  cfg_loaded, _ = load_hf_model(os.path.join(straight, "final"))
  assert cfg_loaded.vocab_size == 1024

  # Evaluation stage: one column per checkpoint; identical checkpoints give identical numbers.
  ev = str(tmp_path / "eval")
  _run(_cli(os.path.join(ROOT, "experiments", "evaluate.py:tiny"), ev,
            f"--config.checkpoints=straight={straight}/final,resumed={resumed}/final",
            "--config.eval.tasks=countdown", "--config.eval.n=4", "--config.eval.k=2",
            "--config.eval.max_new_tokens=12", cache=cache))
  table = open(os.path.join(ev, "eval_table.md")).read().splitlines()
  assert "straight" in table[0] and "resumed" in table[0] and table[0].index("straight") < table[0].index("resumed")
  results = json.load(open(os.path.join(ev, "eval_results.json")))["results"]
  by_label = {r["label"]: r for r in results}
  assert by_label["straight"]["pass_at_1"] == by_label["resumed"]["pass_at_1"]
  assert by_label["straight"]["mean_length"] == by_label["resumed"]["mean_length"]
  assert by_label["straight"]["k"] == 2 and by_label["straight"]["num_problems"] == 4


@pytest.mark.parametrize("flag,message", [
    ("--config.train.stepz=3", "stepz"),
    ("--config.model.preset=gpt-9", "config.model.preset: unknown preset 'gpt-9'"),
    ("--config.data.batch_size=6", "config.data.batch_size=6 is not divisible by train.grad_accum_steps=4"),
])
def test_config_errors_name_the_key(tmp_path, flag, message):
  cfg = os.path.join(ROOT, "experiments", "cold_start.py:tiny")
  extra = ["--config.train.grad_accum_steps=4"] if "grad_accum" in message else []
  p = subprocess.run(_cli(cfg, str(tmp_path / "w"), flag, *extra), cwd=ROOT, env=_env(), capture_output=True,
                     text=True, timeout=300)
  assert p.returncode != 0 and message in p.stderr, p.stderr[-2000:]
  assert not os.path.exists(tmp_path / "w" / "checkpoints")  # failed before any work
