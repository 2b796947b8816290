"""The reward-model stage and all-scenario RL, end to end through the CLI (subprocesses).

- Micro RM stages of both kinds export a reward model directory; reloaded with
  `load_reward_model`, it reproduces the held-out loss / accuracy / AUC the stage computed
  from its in-memory weights.
- Kill -9 after step 3 + resume == the straight run (weights, head, held-out metrics); a re-run
  on a finished workdir trains nothing; `pipeline.stage_done` knows the export marker.
- Config errors name the key.
- A micro all-scenario RL run (one rollout) scores general prompts with both exported RMs (and only them),
  reasoning prompts with the rule rewards, and reports each component in its metrics.
- Pure pieces: reward routing by task, the general-prompt mix, ROC AUC, the held-out split.

The subprocesses run in two concurrent waves (2 cores): RM runs + the killed run, then the
resume + the RL run.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RM_CONFIG = os.path.join(ROOT, "experiments", "reward_model.py:tiny")
RL_CONFIG = os.path.join(ROOT, "experiments", "all_scenario_rl.py:tiny")
MICRO_MODEL = "--config.model.overrides={'n_layers': 1, 'd_model': 64, 'n_heads': 2, 'n_kv_heads': 1, 'ffn_dim': 128}"
STEPS, EVAL_BATCH, MAX_LEN = 4, 8, 160
RM_MICRO = [MICRO_MODEL, f"--config.train.steps={STEPS}", "--config.train.checkpoint_every=2",
            "--config.train.log_every=1", "--config.rm.eval_every=2", f"--config.rm.eval_batch_size={EVAL_BATCH}",
            "--config.rm.eval_fraction=0.25", "--config.data.corpus_size=48", "--config.data.batch_size=4",
            f"--config.data.max_len={MAX_LEN}", "--config.tokenizer.train_corpus=preference,safety",
            "--config.tokenizer.vocab_size=400", "--config.train.progress=False"]
SAFETY = ["--config.rm.kind=safety", "--config.data.corpus=safety"]
G, PROMPTS = 2, 4


def _env(**extra):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one CPU device in the subprocesses
  env["PYTHONPATH"] = ROOT
  env.update(extra)
  return env


def _start(config, workdir, flags, cache, **env):
  cmd = [sys.executable, "-m", "r1jax", f"--config={config}", f"--workdir={workdir}", *flags,
         f"--config.compilation_cache_dir={cache}"]
  return subprocess.Popen(cmd, cwd=ROOT, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p, expect=0):
  _, err = p.communicate(timeout=600)
  assert p.returncode == expect, (p.returncode, err[-4000:])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Workdirs of: helpfulness and safety RMs (straight), the helpfulness RM killed after step 3
  and resumed, and the all-scenario RL run that uses the two straight exports."""
  base = tmp_path_factory.mktemp("rm_stage")
  cache = str(base / "cache")
  dirs = {k: str(base / k) for k in ("helpfulness", "safety", "resumed", "rl")}
  wave = [_start(RM_CONFIG, dirs["helpfulness"], RM_MICRO, cache),
          _start(RM_CONFIG, dirs["safety"], RM_MICRO + SAFETY, cache),
          _start(RM_CONFIG, dirs["resumed"], RM_MICRO, cache, R1JAX_KILL_AFTER_STEP="3")]
  for p in wave[:2]:
    _finish(p)
  _finish(wave[2], expect=-signal.SIGKILL)
  dirs["killed_had_export"] = os.path.exists(os.path.join(dirs["resumed"], "final"))
  rl_flags = [f"--config.rewards.options.helpfulness_rm.path={dirs['helpfulness']}/final",
              f"--config.rewards.options.safety_rm.path={dirs['safety']}/final",
              f"--config.tokenizer.path={dirs['helpfulness']}/tokenizer.model", MICRO_MODEL,
              "--config.train.rollouts=1", "--config.train.plots=False", "--config.grpo.max_completion_length=16",
              f"--config.grpo.num_generations={G}", "--config.grpo.prompts_per_step=2",
              "--config.grpo.num_minibatches=2", f"--config.data.batch_size={PROMPTS}",
              "--config.grpo.logprob_chunk_size=64", "--config.data.task.n=32", "--config.data.general.n=32"]
  wave = [_start(RM_CONFIG, dirs["resumed"], RM_MICRO, cache), _start(RL_CONFIG, dirs["rl"], rl_flags, cache)]
  for p in wave:
    _finish(p)
  return dirs


def _rows(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def _eval(workdir):
  return json.load(open(os.path.join(workdir, "eval.json")))


def _heldout(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "data", "heldout.jsonl"))]


# ------------------------------------------------------------------ RM stage


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["helpfulness", "safety"])
def test_export_reloads_with_the_trained_scores(runs, kind):
  from r1jax.rewards.model import load_reward_model
  from r1jax.train.reward_model_stage import evaluate

  workdir = runs[kind]
  result = _eval(workdir)
  assert result["kind"] == kind and result["steps"] == STEPS and result["eval/count"] == 12
  loaded = load_reward_model(os.path.join(workdir, "final"))
  assert loaded.kind == kind and loaded.max_len == MAX_LEN and loaded.template.name == "chat"
  # The stage scored the held-out split with its in-memory weights; the reloaded model must agree.
  again = evaluate(kind, loaded.model, loaded.tokenizer, _heldout(workdir), batch_size=EVAL_BATCH,
                   max_len=MAX_LEN, template=loaded.template, auc=True)
  assert again["eval/count"] == result["eval/count"]
  assert again["eval/accuracy"] == result["eval/accuracy"]
  np.testing.assert_allclose(again["eval/loss"], result["eval/loss"], rtol=1e-5)
  if kind == "safety":
    assert "eval/auc" in result and again["eval/auc"] == result["eval/auc"]
  rows = _rows(workdir)
  assert [r["step"] for r in rows if "train/loss" in r] == list(range(1, STEPS + 1))
  assert [r["step"] for r in rows if "eval/accuracy" in r] == [2, STEPS]
  assert all(np.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
  assert os.path.isdir(os.path.join(workdir, "tb"))


@pytest.mark.slow
def test_kill_and_resume_equals_the_straight_run(runs):
  from safetensors.numpy import load_file

  assert not runs["killed_had_export"]
  straight, resumed = (os.path.join(runs[k], "final") for k in ("helpfulness", "resumed"))
  a, b = load_file(os.path.join(straight, "model.safetensors")), load_file(os.path.join(resumed, "model.safetensors"))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  with np.load(os.path.join(straight, "reward_head.npz")) as ha, np.load(os.path.join(resumed, "reward_head.npz")) as hb:
    np.testing.assert_array_equal(ha["weight"], hb["weight"])
    np.testing.assert_array_equal(ha["bias"], hb["bias"])
  assert _eval(runs["resumed"]) == _eval(runs["helpfulness"])


@pytest.mark.slow
def test_rerun_on_a_finished_workdir_trains_nothing(runs, tmp_path):
  from r1jax.train.pipeline import load_experiment, stage_done
  from r1jax.train.stages import run_stage

  workdir = runs["helpfulness"]
  final = os.path.join(workdir, "final")
  before = (open(os.path.join(workdir, "metrics.jsonl")).read(), os.stat(os.path.join(final, "reward_head.npz")).st_mtime_ns)
  cfg = load_experiment("reward_model.py:tiny", os.path.join(ROOT, "experiments"))
  assert run_stage(cfg, workdir) == _eval(workdir)
  assert before == (open(os.path.join(workdir, "metrics.jsonl")).read(),
                    os.stat(os.path.join(final, "reward_head.npz")).st_mtime_ns)
  assert stage_done("reward_model", workdir)
  assert not stage_done("reward_model", str(tmp_path))
  os.makedirs(tmp_path / "final")
  open(tmp_path / "final" / "config.json", "w").write("{}")  # a policy export is not a reward model
  assert not stage_done("reward_model", str(tmp_path))


@pytest.mark.parametrize("override,message", [
    (("rm.kind", "pairwise"), "config.rm.kind: 'pairwise' is not one of"),
    (("data.corpus", "safety"), "config.data.corpus: a helpfulness reward model trains on the 'preference'"),
    (("data.kind", "pointwise"), "config.data.kind: a helpfulness reward model reads 'preference'"),
    (("rm.eval_fraction", 1.0), "config.rm.eval_fraction"),
    (("train.steps", 0), "config.train.steps"),
    (("data.corpus", ""), "config.data: set data.corpus"),
])
def test_rm_config_errors_name_the_key(override, message):
  from r1jax.train.config_check import ConfigError
  from r1jax.train.pipeline import apply_overrides, load_experiment
  from r1jax.train.stages import validate

  cfg = load_experiment("reward_model.py:tiny", os.path.join(ROOT, "experiments"))
  validate(cfg)  # the preset itself is valid
  apply_overrides(cfg, dict([override]), "test")
  with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
    validate(cfg)


def test_all_scenario_config_needs_the_reward_model_paths(tmp_path):
  from r1jax.train.config_check import ConfigError
  from r1jax.train.pipeline import load_experiment
  from r1jax.train.stages import validate

  cfg = load_experiment("all_scenario_rl.py:tiny", os.path.join(ROOT, "experiments"))
  assert cfg.grpo.rollout_temperature == 0.7
  with pytest.raises(ConfigError, match="config.rewards.options.helpfulness_rm.path: set it"):
    validate(cfg)
  cfg.rewards.options.helpfulness_rm.path = str(tmp_path)
  with pytest.raises(ConfigError, match="config.rewards.options.helpfulness_rm.path: .* no reward_model.json"):
    validate(cfg)
  with pytest.raises(ValueError, match="unknown argument 'huge'"):
    load_experiment("all_scenario_rl.py:huge", os.path.join(ROOT, "experiments"))


# ------------------------------------------------------------------ all-scenario RL


@pytest.mark.slow
def test_all_scenario_rl_routes_the_reward_models_to_general_prompts(runs):
  rows = [r for r in _rows(runs["rl"]) if "rollout" in r]
  assert [r["rollout"] for r in rows] == [1]
  n = G * PROMPTS
  for r in rows:
    general = r["reward/helpfulness_rm/rows"]
    # Row counts cover every sampled row: n per draw (dynamic sampling may draw more than once).
    draws = r.get("rollout/dynamic/draws", 1.0)
    assert r["reward/safety_rm/rows"] == general and r["reward/accuracy/rows"] + general == n * draws, r
    if general:
      assert r["reward/helpfulness_rm/failed"] == 0 and r["reward/safety_rm/failed"] == 0
      assert np.isfinite(r["reward/helpfulness_rm/mean"]) and 0 <= r["reward/safety_rm/mean"] <= 1
    assert r["reward/accuracy/unrouted"] == 0  # general rows never reach the rule verifiers
  assert rows[0]["reward/helpfulness_rm/rows"] > 0 and rows[0]["reward/accuracy/rows"] > 0  # the seeded batch mixes both
  assert os.path.exists(os.path.join(runs["rl"], "final", "config.json"))


# ------------------------------------------------------------------ pure pieces


def test_combined_reward_routes_rows_by_task():
  from r1jax.rewards import registry
  from r1jax.rewards.combine import CombinedReward
  from r1jax.rewards.registry import RewardOutput

  seen = []

  def echo(**options):
    def fn(completions, answers, metadata):
      seen.append(list(completions))
      return RewardOutput(np.asarray([float(len(c)) for c in completions], np.float32), {"calls": 1.0})
    return fn

  if "test_routed_echo" not in registry.available():
    registry.register("test_routed_echo")(echo)
  completions = ["aa", "bbbb", "c", "dddddd"]
  metadata = [{"task": "general"}, {"task": "arithmetic"}, {}, {"task": "general"}]
  combined = CombinedReward({"test_routed_echo": 2.0, "format": 1.0},
                            {"test_routed_echo": {"tasks": ["general"]}})
  out = combined(completions, [None] * 4, metadata)
  assert seen == [["aa", "dddddd"]]  # only its rows are shown to a routed reward
  np.testing.assert_array_equal(out.components["test_routed_echo"], [2, 0, 0, 6])
  np.testing.assert_array_equal(out.total, 2 * out.components["test_routed_echo"] + out.components["format"])
  assert out.metrics["test_routed_echo/rows"] == 2 and out.metrics["test_routed_echo/mean"] == 4.0
  assert "format/rows" not in out.metrics and out.metrics["format/mean"] == 0.0
  # A row without a task is the default task ("math"); a batch with none of its rows skips the call.
  math_only = CombinedReward({"test_routed_echo": 1.0}, {"test_routed_echo": {"tasks": ["math"]}})
  np.testing.assert_array_equal(math_only(completions, [None] * 4, metadata).total, [0, 0, 1, 0])
  out = math_only(["x"], [None], [{"task": "general"}])
  assert len(seen) == 2 and out.metrics["test_routed_echo/rows"] == 0 and "test_routed_echo/mean" not in out.metrics
  for bad in ("general", [], [""], [3]):
    with pytest.raises(ValueError, match=r"options\['test_routed_echo'\]\['tasks'\]"):
      CombinedReward({"test_routed_echo": 1.0}, {"test_routed_echo": {"tasks": bad}})


def test_general_prompts_join_the_rl_stream(tmp_path):
  from r1jax.data.config import data_config, source_from_config
  from r1jax.data.tasks import corpora

  cfg = data_config("rl")
  cfg.task.name, cfg.task.n = "arithmetic", 10
  only_reasoning = len(source_from_config(cfg))
  cfg.general.corpus, cfg.general.n = "general_prompts", 6
  path = tmp_path / "general.jsonl"
  path.write_text(json.dumps({"question": "Say hello."}) + "\n" + json.dumps({"question": "Hi", "task": "chat"}) + "\n")
  cfg.general.paths, cfg.general.fields = (str(path),), {"prompt": "question"}
  src = source_from_config(cfg)
  rows = [src[i] for i in range(len(src))]
  assert only_reasoning == 10 and len(rows) == 18
  assert all(r["task"] == "arithmetic" for r in rows[:10])
  want = corpora.general_prompts_corpus(6, seed=0)
  assert [r["prompt"] for r in rows[10:16]] == [r["prompt"] for r in want]
  assert [r["answer"] for r in rows[10:16]] == [r["answer"] for r in want]
  assert all(r["task"] == "general" for r in rows[10:17]) and rows[17]["task"] == "chat"
  assert rows[16]["prompt"] == "Say hello." and rows[16]["answer"] == {}
  assert any(r["kind"] == "harmful" for r in corpora.general_prompts_corpus(40, seed=0))
  cfg.general.corpus = "nope"
  with pytest.raises(ValueError, match="data.general.corpus: unknown corpus 'nope'"):
    source_from_config(cfg)


def test_roc_auc_matches_pair_counting():
  from r1jax.train.reward_model_stage import roc_auc

  rng = np.random.default_rng(0)
  for _ in range(5):
    scores = rng.integers(0, 6, 40).astype(np.float64)  # many ties
    labels = rng.integers(0, 2, 40)
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    np.testing.assert_allclose(roc_auc(scores, labels), brute, rtol=1e-12)
  assert np.isnan(roc_auc(np.ones(3), np.ones(3)))


def test_heldout_split_is_seeded_and_disjoint():
  from r1jax.train.reward_model_stage import split_records

  records = [{"id": i} for i in range(50)]
  train, held = split_records(records, 0.2, seed=3)
  assert len(held) == 10 and len(train) == 40
  assert sorted(r["id"] for r in train + held) == list(range(50))
  assert split_records(records, 0.2, seed=3) == (train, held)
  assert split_records(records, 0.2, seed=4)[1] != held
  assert split_records(records, 0.0, seed=3) == (records, [])
  with pytest.raises(ValueError, match="eval_fraction"):
    split_records(records[:1], 0.5, seed=0)
