"""Every experiments/*.py preset, loaded the way the CLI loads it (ml_collections config_flags):
- it loads, unknown arguments are refused with the list of known ones, and a mistyped override
  fails naming the key;
- a stage config passes r1jax.train.stages.validate (checkpoint paths filled with stand-ins);
- a pipeline's stages resolve ("{stage}", "{stage:dir}", "{config:field}") into stage configs
  whose every override key exists and which validate;
- experiments/distill.py:tiny runs end to end on micro shapes: a tiny teacher's samples are kept,
  tagged source="distillation", and a smaller student is SFT-ed on them and exported.
"""
import glob
import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from r1jax.train.pipeline import apply_overrides, load_experiment, resolve, resolve_fields
from r1jax.train.stages import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = os.path.join(ROOT, "experiments")


def _presets(path: str) -> list:
  """The presets a file names in its unknown-preset error, e.g. "... (tiny, paper)"; [None] when
  the error does not list them (the test then fails, naming the file)."""
  try:
    load_experiment(f"{path}:__no_such_preset__", EXPERIMENTS)
  except ValueError as e:
    m = re.search(r"\(([^()]+)\)\s*$", str(e))
    if "__no_such_preset__" in str(e) and m:
      return [p.strip() for p in m.group(1).split(",")]
  return [None]


FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXPERIMENTS, "*.py")))
SPECS = [f"{f}:{p}" if p else f for f in FILES for p in _presets(f)]


def _parse(monkeypatch, spec: str, *overrides: str):
  """What r1jax.cli does: config_flags with a locked config (overrides are read from sys.argv)."""
  argv = ["r1jax", f"--config={os.path.join(EXPERIMENTS, spec)}", *overrides]
  monkeypatch.setattr(sys, "argv", argv)
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "experiment", flag_values=fv, lock_config=True)
  fv(argv)
  return fv.config


@pytest.fixture(scope="module")
def fake_checkpoint(tmp_path_factory):
  """A directory that passes the 'is a checkpoint / reward-model dir' checks (their marker files)."""
  from r1jax.rewards.model import META_FILE

  d = tmp_path_factory.mktemp("ckpt")
  for name in ("config.json", META_FILE):
    (d / name).write_text("{}")
  (d / "data.jsonl").write_text("")
  return str(d)


def _fill_checkpoints(cfg, ckpt: str):
  """Presets leave the inputs a user must supply empty (a checkpoint to start from, reward-model
  dirs, data files); stand-ins let validation check everything else."""
  if cfg.kind == "evaluate" and not cfg.checkpoints:
    cfg.checkpoints = f"a={ckpt}"
  if cfg.kind == "evaluate" and not cfg.eval.tasks and not cfg.eval.benchmarks:
    cfg.eval.benchmarks = f"aime2024={os.path.join(ckpt, 'data.jsonl')}"  # the paper preset: files to give
  if "model" in cfg and not cfg.model.get("init_from") and not cfg.model.get("preset"):
    cfg.model.init_from = ckpt
  for opts in (cfg.rewards.get("options", {}) or {}).values() if "rewards" in cfg else ():
    if "path" in opts and not opts["path"]:
      opts["path"] = ckpt
  data = cfg.get("data", None)
  if data is not None and "spec" in data and not data.spec.paths and not data.get("corpus", "") \
      and not data.task.get("name", ""):
    data.spec.paths = (os.path.join(ckpt, "data.jsonl"),)
  return cfg


def _stage_configs(cfg, workdir: str) -> list:
  """A pipeline's stage configs as run_pipeline builds them (stage exports faked as finished)."""
  dirs, out = {}, []
  for name, spec, overrides in cfg.stages:
    dirs[name] = os.path.join(workdir, name)
    os.makedirs(os.path.join(dirs[name], "final"), exist_ok=True)
    from r1jax.rewards.model import META_FILE

    for marker in ("config.json", META_FILE):  # a policy export or a reward-model export
      with open(os.path.join(dirs[name], "final", marker), "w") as f:
        f.write("{}")
    stage_cfg = load_experiment(spec, EXPERIMENTS)
    apply_overrides(stage_cfg, resolve(resolve_fields(dict(overrides), cfg), dirs), f"pipeline stage {name!r}")
    out.append((name, stage_cfg))
  return out


@pytest.mark.parametrize("spec", SPECS)
def test_preset_loads_validates_and_names_a_bad_override(monkeypatch, tmp_path, fake_checkpoint, spec):
  assert ":" in spec, f"experiments/{spec}: get_config('__no_such_preset__') must raise a ValueError ending " \
                      "with the known presets, e.g. '(tiny, qwen2.5-math-1.5b)'"
  cfg = _parse(monkeypatch, spec, "--config.stage=renamed")
  assert cfg.stage == "renamed"  # overrides reach the config
  # config_flags raises AttributeError or an absl flags.Error, depending on where the key is missing.
  with pytest.raises((AttributeError, KeyError, flags.Error), match="no_such_field"):
    _parse(monkeypatch, spec, "--config.no_such_field=1")
  if cfg.kind != "pipeline":
    validate(_fill_checkpoints(cfg, fake_checkpoint))
    return
  validate(cfg)
  if "teacher" in cfg and not cfg.teacher:  # distill.py: the one field without a default
    cfg.teacher = fake_checkpoint
  for name, stage_cfg in _stage_configs(cfg, str(tmp_path)):
    try:
      validate(_fill_checkpoints(stage_cfg, fake_checkpoint))
    except Exception as e:  # name the stage: the stage error alone does not say which
      raise AssertionError(f"{spec} stage {name!r}: {e}") from e


def test_stage_config_errors_name_the_key(fake_checkpoint):
  from r1jax.train.config_check import ConfigError

  cfg = load_experiment("reasoning_rl.py:tiny", EXPERIMENTS)
  cfg.rewards.weights = {**cfg.rewards.weights, "lenguage": 1.0}
  with pytest.raises(ConfigError, match=r"config\.rewards\.weights\.lenguage: unknown reward"):
    validate(cfg)
  cfg = load_experiment("reasoning_rl.py:qwen2.5-math-1.5b", EXPERIMENTS)
  with pytest.raises(ConfigError, match=r"config\.model: set model\.init_from"):
    validate(cfg)  # the cold-start export is required, there is no random fallback


def test_reasoning_rl_is_r1_stage_two():
  """Paper §2.3.2 on top of the Nature-version RL hyperparameters (rl/config.py r1 recipe)."""
  from r1jax.rl.config import LEARNING_RATES, r1_recipe

  cfg = load_experiment("reasoning_rl.py:qwen2.5-math-1.5b", EXPERIMENTS)
  paper = r1_recipe()
  assert cfg.kind == "grpo" and cfg.data.template.name == "r1"
  assert dict(cfg.rewards.weights) == {"accuracy": 1.0, "format": 1.0, "language": 1.0}
  assert cfg.rewards.options.format.allow_summary is True
  for key in ("beta", "num_generations", "prompts_per_step", "rollout_temperature",
              "ref_update_interval", "clip_eps_low", "num_minibatches"):
    assert cfg.grpo[key] == getattr(paper, key), key
  assert (cfg.optim.learning_rate, cfg.grpo.beta, cfg.grpo.num_generations, cfg.grpo.ref_update_interval) == \
      (3e-6, 0.001, 16, 400)
  assert cfg.optim.learning_rate == LEARNING_RATES["r1"] and "learning_rate" not in cfg.grpo  # one home
  from r1jax.models.presets import PRESETS

  # Prompt + completion fit the student's positions.
  assert cfg.data.max_prompt_len + cfg.grpo.max_completion_length <= \
      PRESETS["qwen2.5-math-1.5b"].max_position_embeddings


def test_config_field_references():
  import ml_collections

  c = ml_collections.ConfigDict({"teacher": "/t", "tok": "{config:teacher}", "ov": {"n_layers": 2}, "n": 3,
                                 "loop_a": "{config:loop_b}", "loop_b": "{config:loop_a}"})
  got = resolve_fields({"model.init_from": "{config:teacher}", "tokenizer.path": "{config:tok}",
                        "model.overrides": "{config:ov}", "steps": "{config:n}", "paths": ("{config:teacher}/x",),
                        "plain": "{base:dir}/y"}, c)
  assert got == {"model.init_from": "/t", "tokenizer.path": "/t", "model.overrides": {"n_layers": 2}, "steps": 3,
                 "paths": ("/t/x",), "plain": "{base:dir}/y"}  # stage references are left for `resolve`
  assert type(got["model.overrides"]) is dict
  with pytest.raises(KeyError, match="no field 'teachr'"):
    resolve_fields("{config:teachr}", c)
  with pytest.raises(ValueError, match="circular"):
    resolve_fields("{config:loop_a}", c)


def test_distill_fields_reach_the_stages_from_the_command_line(monkeypatch, tmp_path):
  cfg = _parse(monkeypatch, "distill.py:tiny", "--config.teacher=/runs/r1/final",
               "--config.student_overrides.n_layers=1")
  stages = dict(_stage_configs(cfg, str(tmp_path)))
  teacher, student = stages["teacher_samples"], stages["student"]
  assert teacher.kind == "rejection" and teacher.stage == "distillation"
  assert teacher.model.init_from == "/runs/r1/final" and not teacher.model.preset
  assert student.kind == "sft" and student.model.preset == "tiny_dense" and student.model.overrides.n_layers == 1
  assert student.tokenizer.path == "/runs/r1/final"  # the tiny random student shares the teacher's tokenizer
  assert student.data.spec.paths == (os.path.join(str(tmp_path), "teacher_samples", "data", "rejection_sft.jsonl"),)
  cfg = _parse(monkeypatch, "distill.py:qwen2.5-math-1.5b", "--config.teacher=/r1", "--config.student=/qwen")
  student = dict(_stage_configs(cfg, str(tmp_path)))["student"]
  assert student.model.init_from == "/qwen" and student.tokenizer.path == "" and dict(student.model.overrides) == {}
  with pytest.raises((AttributeError, KeyError, flags.Error), match="teachr"):
    _parse(monkeypatch, "distill.py:tiny", "--config.teachr=/x")


# Shrinks both stages to seconds. A random teacher solves nothing: accept every sample.
MICRO = (("train.steps", 2), ("train.checkpoint_every", 1), ("train.log_every", 1), ("train.progress", False),
         ("progress", False), ("data.task.n", 4), ("sampling.k", 2), ("sampling.max_new_tokens", 8),
         ("sampling.batch_prompts", 8), ("rejection.shard_prompts", 8), ("data.seq_len", 256),
         ("data.batch_size", 4), ("train.logprob_chunk_size", 128),
         ("rejection.correct_threshold", 0.0), ("rejection.drop_truncated", False),
         ("filters.require_think", False), ("filters.min_language_consistency", 0.0))


def _make_teacher(out: str) -> None:
  """A random tiny_dense export with its own sentencepiece tokenizer (the stand-in for R1)."""
  import ml_collections

  from r1jax.models.presets import get_preset
  from r1jax.models.sharded import create_sharded_model
  from r1jax.parallel.mesh import make_mesh
  from r1jax.train import common

  tok_dir = os.path.join(os.path.dirname(out), "teacher_tok")
  tok_path = common.train_tokenizer(ml_collections.ConfigDict(
      dict(train_corpus="pretraining,cold_start", vocab_size=400, seed=0)), tok_dir)
  mesh = make_mesh({"fsdp": -1})
  model = create_sharded_model(get_preset("tiny_dense", vocab_size=400), mesh, seed=0)
  common.export_final(model, tok_path, os.path.dirname(out))


@pytest.mark.slow
def test_distill_tiny_end_to_end(tmp_path):
  teacher = str(tmp_path / "teacher" / "final")
  _make_teacher(teacher)
  exp = tmp_path / "micro_distill.py"
  exp.write_text(
      "import importlib.util\n"
      f"spec = importlib.util.spec_from_file_location('d', {os.path.join(EXPERIMENTS, 'distill.py')!r})\n"
      "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
      "def get_config(arg='tiny'):\n"
      "  c = m.get_config(arg)\n"
      f"  c.experiments_dir = {EXPERIMENTS!r}\n"
      f"  c.common_overrides = {MICRO!r}\n"
      "  return c\n")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = ROOT
  wd = tmp_path / "run"
  cmd = [sys.executable, "-m", "r1jax", f"--config={exp}:tiny", f"--workdir={wd}", f"--config.teacher={teacher}"]
  p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-5000:]
  assert [line.split("\t")[0] for line in open(wd / "timings.tsv")] == ["teacher_samples", "student"]

  rows = [json.loads(line) for line in open(wd / "teacher_samples" / "data" / "rejection_sft.jsonl")]
  reasoning = [r for r in rows if r["task"] in ("countdown", "arithmetic")]
  assert reasoning and all(r["source"] == "distillation" for r in reasoning)
  assert all(r["source"] != "rejection" for r in rows)
  assert json.load(open(wd / "teacher_samples" / "stats.json"))["source"] == "distillation"

  final = wd / "student" / "final"
  student_cfg = json.load(open(final / "config.json"))
  teacher_cfg = json.load(open(os.path.join(teacher, "config.json")))
  assert student_cfg["num_hidden_layers"] == 2 < teacher_cfg["num_hidden_layers"]
  assert student_cfg["hidden_size"] == 96 < teacher_cfg["hidden_size"]
  assert student_cfg["vocab_size"] == teacher_cfg["vocab_size"]
  assert (final / "tokenizer.model").read_bytes() == open(os.path.join(teacher, "tokenizer.model"), "rb").read()
  assert json.load(open(final / "r1jax_stage.json"))["stage"] == "distilled_student"
  losses = [json.loads(line)["train/loss"] for line in open(wd / "student" / "metrics.jsonl")]
  assert len(losses) == 2 and all(l == l and l > 0 for l in losses)  # trained on the samples, finite
