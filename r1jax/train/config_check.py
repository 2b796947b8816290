"""Start-of-run checks every stage kind shares; each problem names the key that causes it.

A stage's own checks live with the stage (`check_<kind>_config` in its module), dispatched from
the stage table (`train/stages.py`), so this module imports no stage and no stage imports another.
"""
from __future__ import annotations

from typing import Any

from r1jax import fs


class ConfigError(ValueError):
  pass


def need(cfg, key: str, where: str = ""):
  """cfg[key], or a ConfigError naming `config.<where><key>`."""
  if key not in cfg:
    raise ConfigError(f"config.{where}{key}: missing")
  return cfg[key]


def need_sections(cfg, keys) -> None:
  for key in keys:
    need(cfg, key)


def need_positive(section, keys, where: str, *, allow_zero: bool = False) -> None:
  """Each `section[key]` > 0 (>= 0 with allow_zero), or a ConfigError naming `config.<where>.<key>`."""
  for key in keys:
    value = need(section, key, f"{where}.")
    if not (value >= 0 if allow_zero else value > 0):
      raise ConfigError(f"config.{where}.{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def check_checkpoint_dir(path: str, key: str) -> None:
  if not fs.exists(fs.join(path, "config.json")):
    raise ConfigError(f"config.{key}: {path!r} has no config.json (not a checkpoint dir)")


def check_model(cfg: Any) -> None:
  """model.init_from (an HF-format checkpoint dir) or a known model.preset."""
  m = need(cfg, "model")
  if not m.get("init_from") and not m.get("preset"):
    raise ConfigError("config.model: set model.init_from (a checkpoint dir) or model.preset")
  if m.get("preset"):
    from r1jax.models.presets import PRESETS

    if m.preset not in PRESETS:
      raise ConfigError(f"config.model.preset: unknown preset {m.preset!r}; known: {sorted(PRESETS)}")
  if m.get("init_from"):
    check_checkpoint_dir(m.init_from, "model.init_from")


def check_data_kind(cfg: Any, kind: str, what: str) -> None:
  if cfg.data.kind != kind:
    raise ConfigError(f"config.data.kind: {what} needs {kind!r} data, got {cfg.data.kind!r}")


def check_training(cfg: Any, *, data_kind: str, what: str, train_keys=()) -> None:
  """What every trained stage needs: model, tokenizer, data of `data_kind`, an optimiser with a
  positive learning rate, and positive `train.<train_keys>`."""
  need_sections(cfg, ("model", "tokenizer", "data", "optim", "train"))
  check_model(cfg)
  check_data_kind(cfg, data_kind, what)
  need_positive(cfg.optim, ("learning_rate",), "optim")
  need_positive(cfg.train, train_keys, "train")
  check_registry_names(cfg)


# ---------------------------------------------------------------------------- registry names
# Every name a config gives to a registry (tasks, corpora, rewards, templates, chat formats,
# presets) is checked at start, naming the key and the known names: a typo must not wait for the
# first evaluation (or the first batch) to fail, after training updates have run.


def _unknown(key: str, what: str, value: Any, known) -> ConfigError:
  return ConfigError(f"config.{key}: unknown {what} {value!r}; known: {sorted(known)}")


def _names(value: Any, comma: bool) -> list[str]:
  return [n.strip() for n in str(value).split(",")] if comma else [str(value)]


def check_task_names(value: Any, key: str, *, comma: bool = False) -> None:
  """`value` names offline tasks (data.tasks: one, or comma-separated with `comma`)."""
  from r1jax.data import tasks

  for name in _names(value, comma):
    if name not in tasks.REASONING_TASKS:
      raise _unknown(key, "task", name, tasks.REASONING_TASKS)


def corpus_names() -> list[str]:
  """The synthetic corpora: `<name>_corpus` functions of data.tasks.corpora."""
  from r1jax.data.tasks import corpora

  return sorted(n[:-len("_corpus")] for n in dir(corpora)
                if n.endswith("_corpus") and not n.startswith("_") and callable(getattr(corpora, n)))


def check_corpus_names(value: Any, key: str, *, comma: bool = False) -> None:
  known = corpus_names()
  for name in _names(value, comma):
    if name not in known:
      raise _unknown(key, "corpus", name, known)


def check_reward_name(name: Any, key: str) -> None:
  """`name` (at `config.<key>`) is a registered reward."""
  from r1jax.rewards import registry

  known = registry.available()
  if name not in known:
    failed = registry.import_failures()
    raise ConfigError(f"config.{key}: unknown reward {name!r}; known: {sorted(known)}"
                      + (f"; reward modules that failed to import: {failed}" if failed else ""))


def check_template(template: Any, key: str = "data.template") -> None:
  """A prompt template section: a known name and chat format, well-formed shots."""
  from r1jax.data import chat
  from r1jax.data.templates import TEMPLATE_NAMES, build_template

  name = template.get("name", "r1_zero")
  if name not in TEMPLATE_NAMES:
    raise _unknown(f"{key}.name", "template", name, TEMPLATE_NAMES)
  chat_format = template.get("chat_format", "plain")
  if chat_format not in chat.CHAT_FORMAT_NAMES:
    raise _unknown(f"{key}.chat_format", "chat format", chat_format, chat.CHAT_FORMAT_NAMES)
  try:
    build_template(template)
  except (KeyError, ValueError) as e:
    raise ConfigError(f"config.{key}: {e}") from e


def check_registry_names(cfg: Any) -> None:
  """The names every stage kind may hold: model.preset, tokenizer.train_corpus, data.template,
  data.task.name, data.corpus, data.general.corpus (each checked where the config has it)."""
  m = cfg.get("model", None)
  if m is not None and m.get("preset"):
    from r1jax.models.presets import PRESETS

    if m.preset not in PRESETS:
      raise _unknown("model.preset", "preset", m.preset, PRESETS)
  t = cfg.get("tokenizer", None)
  if t is not None and t.get("train_corpus"):
    check_corpus_names(t.train_corpus, "tokenizer.train_corpus", comma=True)
  d = cfg.get("data", None)
  if d is None:
    return
  if d.get("template", None) is not None:
    check_template(d.template)
  task = d.get("task", None)
  if task is not None and task.get("name"):
    # The RL / SFT pipelines read one task; rejection sampling checks its comma list itself.
    check_task_names(task.name, "data.task.name", comma=cfg.get("kind") == "rejection")
  if d.get("corpus"):
    check_corpus_names(d.corpus, "data.corpus")
  general = d.get("general", None)
  if general is not None and general.get("corpus"):
    check_corpus_names(general.corpus, "data.general.corpus")
