"""Config validation (`stages.validate`) checks every registry name a stage config holds (tasks,
corpora, rewards, templates, chat formats, presets) at start, naming the key and the known names:
a typo must fail before any work, not at the first evaluation after training updates have run."""
import re

import pytest

from r1jax.train.config_check import ConfigError
from r1jax.train.pipeline import apply_overrides, load_experiment
from r1jax.train.stages import validate
from tests.train.test_experiment_configs import EXPERIMENTS, _fill_checkpoints
from tests.train.test_experiment_configs import fake_checkpoint  # noqa: F401 — a fixture

TASKS = r"known: \['addition', 'arithmetic', 'countdown', 'knights_knaves'\]"
TEMPLATES = r"known: \['chat', 'r1', 'r1_zero', 'raw'\]"
CORPORA = r"known: \[[^\]]*'cold_start'[^\]]*'pretraining'"
REWARDS = r"known: \[[^\]]*'accuracy'[^\]]*'format'"


def _config(spec: str, ckpt: str):
  cfg = _fill_checkpoints(load_experiment(spec, EXPERIMENTS), ckpt)
  validate(cfg)  # the preset itself is valid
  return cfg


def _assert_named(spec, ckpt, key, value, message):
  cfg = _config(spec, ckpt)
  apply_overrides(cfg, {key: value}, "test")
  with pytest.raises(ConfigError, match=message) as e:
    validate(cfg)
  assert str(e.value).startswith("config."), str(e.value)


def test_r1_zero_eval_task_typo_fails_at_validation_naming_the_key_and_the_tasks(fake_checkpoint):
  """The held-out evaluation's task used to fail only at the first evaluation (rollout 5 of the
  tiny preset), after training updates had run."""
  _assert_named("r1_zero.py:tiny", fake_checkpoint, "eval.task", "gsm8kk",
                r"^config\.eval\.task: unknown task 'gsm8kk'; " + TASKS)


GRPO_CASES = [
    ("rewards.weights", {"accuracy": 1.0, "fromat": 0.2},
     r"^config\.rewards\.weights\.fromat: unknown reward 'fromat'; " + REWARDS),
    ("rewards.options", {"formatt": {}},
     r"^config\.rewards\.options\.formatt: options for a reward with no weight; rewards\.weights names"),
    ("rewards.options", {"accuracy": {"routes": {"gsm8k": "mathh"}}},
     r"^config\.rewards\.options\.accuracy\.routes\.gsm8k: unknown reward 'mathh'; " + REWARDS),
    ("rewards.options", {"accuracy": {"options": {"mth": {"num_workers": 0}}}},
     r"^config\.rewards\.options\.accuracy\.options\.mth: unknown reward 'mth'"),
    ("data.template.name", "r1zero", r"^config\.data\.template\.name: unknown template 'r1zero'; " + TEMPLATES),
    ("data.template.chat_format", "chatml2", r"^config\.data\.template\.chat_format: unknown chat format 'chatml2'"),
    ("data.task.name", "additon", r"^config\.data\.task\.name: unknown task 'additon'; " + TASKS),
    ("data.general.corpus", "general_prompt", r"^config\.data\.general\.corpus: unknown corpus 'general_prompt'"),
    ("model.preset", "tiny_dence", r"^config\.model\.preset: unknown preset 'tiny_dence'; known: \["),
    ("tokenizer.train_corpus", "pretraining,cold_strat",
     r"^config\.tokenizer\.train_corpus: unknown corpus 'cold_strat'; " + CORPORA),
]


SFT_CASES = [
    ("data.template.name", "r2", r"^config\.data\.template\.name: unknown template 'r2'; " + TEMPLATES),
    ("data.corpus", "cold_strat", r"^config\.data\.corpus: unknown corpus 'cold_strat'; " + CORPORA),
    ("data.task.name", "gsm8kk", r"^config\.data\.task\.name: unknown task 'gsm8kk'; " + TASKS),
    ("model.preset", "gpt-9", r"^config\.model\.preset: unknown preset 'gpt-9'"),
    ("tokenizer.train_corpus", "pretrain", r"^config\.tokenizer\.train_corpus: unknown corpus 'pretrain'"),
]


REJECTION_CASES = [
    ("data.task.name", "countdown,gsm8kk", r"^config\.data\.task\.name: unknown task 'gsm8kk'; " + TASKS),
    ("data.template.name", "r1-zero", r"^config\.data\.template\.name: unknown template 'r1-zero'; " + TEMPLATES),
    ("rejection.reward", "accuracyy", r"^config\.rejection\.reward: unknown reward 'accuracyy'; " + REWARDS),
    ("mix.corpus", "instructions", r"^config\.mix\.corpus: unknown corpus 'instructions'; " + CORPORA),
    ("tokenizer.train_corpus", "pretraining,cold_strat", r"^config\.tokenizer\.train_corpus: unknown corpus"),
]


EVALUATE_CASES = [
    ("eval.tasks", "countdown,gsm8kk", r"^config\.eval\.tasks: unknown task 'gsm8kk'; " + TASKS),
    ("eval.tasks", " , ", r"^config\.eval\.tasks: name at least one task"),
    ("data.template.name", "r1_zer0", r"^config\.data\.template\.name: unknown template 'r1_zer0'; " + TEMPLATES),
]


RM_CASES = [
    ("data.template.name", "chatt", r"^config\.data\.template\.name: unknown template 'chatt'; " + TEMPLATES),
    ("data.template.chat_format", "plainn", r"^config\.data\.template\.chat_format: unknown chat format 'plainn'"),
    ("model.preset", "gpt-9", r"^config\.model\.preset: unknown preset 'gpt-9'"),
    ("tokenizer.train_corpus", "pretraining,safe", r"^config\.tokenizer\.train_corpus: unknown corpus 'safe'"),
]


# Every stage kind's registry names, checked by `validate` (one table per experiment config).
CASES = [(spec, *case) for spec, cases in (("r1_zero.py:tiny", GRPO_CASES), ("cold_start.py:tiny", SFT_CASES),
                                          ("rejection_sft.py:tiny", REJECTION_CASES),
                                          ("evaluate.py:tiny", EVALUATE_CASES),
                                          ("reward_model.py:tiny", RM_CASES))
         for case in cases]


@pytest.mark.parametrize("spec,key,value,message", CASES, ids=[f"{c[0]}:{c[1]}={c[2]}" for c in CASES])
def test_registry_names_are_checked_at_validation(fake_checkpoint, spec, key, value, message):
  _assert_named(spec, fake_checkpoint, key, value, message)


def test_malformed_template_shots_are_a_config_error(fake_checkpoint):
  _assert_named("cold_start.py:tiny", fake_checkpoint, "data.template.shots", [{"prompt": "p"}],
                re.escape("config.data.template: template.shots[0]: expected"))
