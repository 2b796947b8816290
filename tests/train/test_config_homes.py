"""Each config value has one home: the GRPO objective's typed config is built once (at validation)
and handed to its runner; derived fields follow their sources through every override path (the
CLI's flags, a pipeline's overrides) yet can be set on their own; a data section holds only the
fields its pipeline kind reads; every stage kind has its check and its runner in the stage table."""
import importlib
import inspect

import pytest

from r1jax.data.config import data_config
from r1jax.rl.config import GRPOConfig
from r1jax.train import stages
from r1jax.train.config_check import ConfigError
from r1jax.train.pipeline import apply_overrides, load_experiment
from tests.train.test_experiment_configs import EXPERIMENTS
from tests.train.test_experiment_configs import _parse as _cli_config  # what the CLI does with flags


def test_derived_fields_follow_their_sources(monkeypatch):
  cfg = _cli_config(monkeypatch, "r1_zero.py:tiny", "--config.grpo.prompts_per_step=3",
                    "--config.grpo.num_minibatches=4", "--config.grpo.max_completion_length=40")
  assert cfg.data.batch_size == 12 and cfg.eval.max_new_tokens == 40
  # Setting a derived field sets only it (a computed reference, not an alias of its source).
  cfg = _cli_config(monkeypatch, "r1_zero.py:tiny", "--config.eval.max_new_tokens=24")
  assert cfg.eval.max_new_tokens == 24 and cfg.grpo.max_completion_length == 192
  cfg = load_experiment("reasoning_rl.py:tiny", EXPERIMENTS)
  apply_overrides(cfg, {"grpo.prompts_per_step": 2, "grpo.max_completion_length": 16}, "test")
  assert cfg.data.batch_size == 2 * cfg.grpo.num_minibatches and cfg.eval.max_new_tokens == 16


def test_one_learning_rate_and_a_typed_grpo_config_built_at_validation():
  cfg = load_experiment("r1_zero.py:tiny", EXPERIMENTS)
  assert "learning_rate" not in cfg.grpo and cfg.optim.learning_rate == 5e-5
  g = stages.validate(cfg)
  assert isinstance(g, GRPOConfig) and g == GRPOConfig(**dict(cfg.grpo))
  cfg.data.batch_size = 5  # set by hand against the rollout shape: one check, naming both sides
  with pytest.raises(ConfigError, match=r"config.data.batch_size=5 must equal grpo.prompts_per_step"):
    stages.validate(cfg)
  cfg = load_experiment("r1_zero.py:tiny", EXPERIMENTS)
  cfg.optim.learning_rate = 0.0
  with pytest.raises(ConfigError, match=r"config.optim.learning_rate: must be > 0"):
    stages.validate(cfg)


def test_run_stage_hands_the_validated_config_to_the_runner(monkeypatch, tmp_path):
  from r1jax.train import rl_stage

  built, seen = [], []
  check = rl_stage.check_grpo_config
  monkeypatch.setattr(rl_stage, "check_grpo_config", lambda cfg: built.append(check(cfg)) or built[-1])
  monkeypatch.setattr(rl_stage, "run_rl", lambda cfg, workdir, gcfg: seen.append(gcfg) or "ran")
  cfg = load_experiment("r1_zero.py:tiny", EXPERIMENTS)
  assert stages.run_stage(cfg, str(tmp_path)) == "ran"
  assert len(built) == 1 and seen[0] is built[0]
  g = stages.validate(cfg)
  assert stages.run_stage(cfg, str(tmp_path), g) == "ran" and seen[-1] is g and len(built) == 2


def test_data_sections_hold_only_their_kinds_fields():
  sft, rl, ev, pref = (data_config(k) for k in ("sft", "rl", "eval", "preference"))
  assert {"seq_len", "pack", "num_packing_bins"} <= set(sft) and "max_prompt_len" not in sft and "max_len" not in sft
  assert {"max_prompt_len", "general"} <= set(rl) and not {"seq_len", "pack", "max_len", "k"} & set(rl)
  assert {"max_prompt_len", "k"} <= set(ev) and "general" not in ev
  assert "max_len" in pref and not {"seq_len", "max_prompt_len"} & set(pref)
  cfg = load_experiment("r1_zero.py:tiny", EXPERIMENTS)
  with pytest.raises(KeyError, match="seq_len"):
    apply_overrides(cfg, {"data.seq_len": 128}, "test")  # an SFT field is not an RL knob


@pytest.mark.parametrize("kind", sorted(stages.STAGES))
def test_every_stage_kind_has_its_check_and_runner(kind):
  stage = stages.STAGES[kind]
  module = importlib.import_module(stage.module)
  assert callable(getattr(module, stage.check))
  params = list(inspect.signature(getattr(module, stage.run)).parameters)
  assert len(params) == 3, (kind, params)  # run(cfg, workdir, checked)


def test_unknown_stage_kind_is_named():
  import ml_collections

  with pytest.raises(ConfigError, match="config.kind: unknown stage kind 'sfft'"):
    stages.validate(ml_collections.ConfigDict({"kind": "sfft"}))
  with pytest.raises(ConfigError, match="config.kind: missing"):
    stages.validate(ml_collections.ConfigDict({}))
