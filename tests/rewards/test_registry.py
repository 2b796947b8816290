"""Registry, weighted combination and per-task accuracy routing."""
import itertools
import logging

import numpy as np
import pytest

from r1jax.rewards import combine, registry
from r1jax.rewards.registry import RewardOutput

_ids = itertools.count()


def _unique(name: str) -> str:
  return f"test_{name}_{next(_ids)}"


def _register_fn(fn) -> str:
  """Registers a batch function under a fresh name (the registry is process-global)."""
  name = _unique("fn")
  registry.register(name)(lambda **options: fn)
  return name


def test_builtins_available_without_imports():
  names = registry.available()
  for name in ("math", "format", "language", "accuracy"):
    assert name in names


def test_register_twice_and_unknown_names():
  name = _unique("dup")
  factory = lambda **options: None
  registry.register(name)(factory)
  registry.register(name)(factory)  # same factory again: fine
  with pytest.raises(ValueError, match="already registered"):
    registry.register(name)(lambda **options: None)
  with pytest.raises(KeyError, match="unknown reward 'nope'.*format"):
    registry.build("nope")


def test_item_verifier_adapter():
  def verify(completion, answer):
    if completion == "boom":
      raise RuntimeError("bug in verifier")
    if completion == "nan":
      return float("nan")
    return 1.0 if completion.strip() == str(answer) else 0.0

  name = _unique("countdown")
  assert registry.register_verifier(name)(verify) is verify
  registry.register_verifier(name)(verify)  # idempotent
  fn = registry.build(name)
  out = fn(["24", "boom", "nan", "23", None], [24, 24, 24, 24, 24], [{}] * 5)
  assert out.scores.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]  # None raised AttributeError: 0
  assert out.metrics["errors"] == 2
  with pytest.raises(TypeError, match="no options"):
    registry.build(name, strict=True)


def test_weighted_sum_matches_components():
  completions = ["<think>We add.</think>\n<answer>4</answer>",
                 "Sure! <think>我们 add</think><answer>4</answer>",
                 "<think>We add. 我们相加</think><answer>5</answer> bye",
                 ""]
  answers = ["4", "4", "4", "4"]
  metadata = [{}, {}, {"language": "zh"}, {}]
  weights = {"format": 0.5, "language": 2.0}
  options = {"format": {"mode": "lenient"}}
  combined = combine.CombinedReward(weights, options)
  out = combined(completions, answers, metadata)
  # Reference: call each reward directly and sum with NumPy.
  fmt = registry.build("format", mode="lenient")(completions, answers, metadata).scores
  lang = registry.build("language")(completions, answers, metadata).scores
  np.testing.assert_allclose(out.total, 0.5 * fmt + 2.0 * lang, rtol=1e-6)
  np.testing.assert_array_equal(out.components["format"], fmt)
  np.testing.assert_array_equal(out.components["language"], lang)
  assert out.total.dtype == np.float32 and out.total.shape == (4,)
  assert out.metrics["format/mean"] == pytest.approx(fmt.mean())
  assert out.metrics["language/failed"] == 0.0
  assert out.metrics["total/mean"] == pytest.approx(out.total.mean())
  assert {"format/too_long", "language/no_think", "format/seconds"} <= set(out.metrics)


def test_failing_components_give_zeros_and_count(caplog):
  def raises(completions, answers, metadata):
    raise RuntimeError("reward bug")

  def wrong_shape(completions, answers, metadata):
    return RewardOutput(scores=np.ones(len(completions) + 1, np.float32))

  def nonfinite(completions, answers, metadata):
    return RewardOutput(scores=np.array([np.nan, 1.0, np.inf], np.float32), metrics={"x": 2.0})

  bad1, bad2, bad3 = _register_fn(raises), _register_fn(wrong_shape), _register_fn(nonfinite)
  combined = combine.CombinedReward({"format": 1.0, bad1: 1.0, bad2: 1.0, bad3: 3.0})
  good = "<think>a</think><answer>b</answer>"
  with caplog.at_level(logging.WARNING, logger="r1jax.rewards.routing"):
    out = combined([good, good, "junk"], ["1"] * 3)
  np.testing.assert_array_equal(out.components[bad1], [0, 0, 0])
  np.testing.assert_array_equal(out.components[bad2], [0, 0, 0])
  np.testing.assert_array_equal(out.components[bad3], [0, 1, 0])
  np.testing.assert_allclose(out.total, [1.0, 1.0 + 3.0, 0.0])
  assert out.metrics[f"{bad1}/failed"] == 1 and out.metrics[f"{bad2}/failed"] == 1
  assert out.metrics[f"{bad3}/nonfinite"] == 2 and out.metrics[f"{bad3}/x"] == 2.0
  assert out.metrics["format/failed"] == 0
  assert "reward bug" in caplog.text and "shape (4,)" in caplog.text


def test_config_errors_are_loud():
  with pytest.raises(ValueError, match="'languag'"):
    combine.CombinedReward({"format": 1.0}, {"languag": {}})
  with pytest.raises(ValueError, match="finite"):
    combine.CombinedReward({"format": float("nan")})
  with pytest.raises(KeyError, match="unknown reward 'acuracy'"):
    combine.CombinedReward({"acuracy": 1.0})
  with pytest.raises(ValueError, match="mode"):
    combine.CombinedReward({"format": 1.0}, {"format": {"mode": "loose"}})
  combined = combine.CombinedReward({"format": 1.0})
  with pytest.raises(ValueError, match="2 completions, 1 answers"):
    combined(["a", "b"], ["1"])


def test_accuracy_routes_rows_by_task(caplog):
  task = _unique("countdown")
  registry.register_verifier(task)(lambda c, a: float(c.strip() == f"<answer>{a}</answer>"))
  acc = registry.build("accuracy", options={"math": {"num_workers": 0}})
  completions = ["<answer>\\frac{1}{2}</answer>",  # math (default task)
                 "<answer>0.5</answer>",           # math, explicit
                 "<answer>24</answer>",            # countdown, right
                 "<answer>0.5</answer>",           # countdown: exact match fails on 1/2
                 "<answer>24</answer>",            # unknown task
                 "<answer>3</answer>"]             # math, wrong
  answers = ["0.5", "1/2", "24", "1/2", "24", "4"]
  metadata = [{}, {"task": "math"}, {"task": task}, {"task": task}, {"task": "chess"},
              {"task": "math"}]
  with caplog.at_level(logging.WARNING, logger="r1jax.rewards.combine"):
    out = acc(completions, answers, metadata)
  assert out.scores.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
  assert out.metrics["unrouted"] == 1 and "chess" in caplog.text
  assert out.metrics["math/rows"] == 3 and out.metrics[f"{task}/rows"] == 2
  assert out.metrics["math/graded"] == 3


def test_accuracy_routes_option_and_combined_use():
  task = _unique("exact")
  registry.register_verifier(task)(lambda c, a: float(a in c))
  combined = combine.CombinedReward(
      {"accuracy": 1.0, "format": 1.0},
      {"accuracy": {"routes": {"gsm8k": task}, "options": {"math": {"num_workers": 0}}}})
  good = "<think>x</think><answer>7</answer>"
  out = combined([good, good], ["7", "8"], [{"task": "gsm8k"}, {"task": "math"}])
  np.testing.assert_allclose(out.components["accuracy"], [1.0, 0.0])
  np.testing.assert_allclose(out.total, [2.0, 1.0])
  assert out.metrics["accuracy/gsm8k/rows"] == 1
  combined.close()


# --- discovery: a decorated module is the only step ---------------------------------------------


@registry.register("test_registry_module_reward")
def _module_reward(**options):
  return lambda completions, answers, metadata: RewardOutput(np.ones(len(completions), np.float32))


def test_reward_registered_by_an_outside_module_is_available():
  """A user's reward (this test module, outside r1jax.rewards) joins on import."""
  assert "test_registry_module_reward" in registry.available()
  out = combine.CombinedReward({"test_registry_module_reward": 1.0})(["a", "b"], [None, None])
  np.testing.assert_array_equal(out.total, [1.0, 1.0])


def _write_package(root, name, modules):
  pkg = root / name
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  for module, source in modules.items():
    (pkg / f"{module}.py").write_text(source)
  return name


def test_discovery_imports_every_module_once_and_reports_broken_ones(tmp_path, monkeypatch, caplog):
  good, other = _unique("discovered"), _unique("discovered_other")
  package = _write_package(tmp_path, _unique("reward_pkg"), {
      "good": ("from r1jax.rewards.registry import register, register_verifier\n"
               "IMPORTS = [1]\n"
               f"@register({good!r})\n"
               "def build(**options):\n"
               "  return lambda c, a, m: None\n"
               f"@register_verifier({other!r})\n"
               "def verify(completion, answer):\n"
               "  return float(completion == answer)\n"),
      "broken": ("from r1jax.rewards.registry import register\n"
                 "raise RuntimeError('broken on purpose')\n"),
  })
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setattr(registry, "_discovery", registry._Discovery(package))
  assert good not in registry._REGISTRY  # nothing imported yet
  with caplog.at_level(logging.WARNING, logger="r1jax.rewards.registry"):
    names = registry.available()  # lenient: the broken module is logged, the rest is there
  assert good in names and other in names
  assert f"{package}.broken failed to import" in caplog.text and "broken on purpose" in caplog.text
  assert registry.build(other)(["x", "y"], ["x", "x"], [{}, {}]).scores.tolist() == [1.0, 0.0]
  import importlib
  module = importlib.import_module(f"{package}.good")
  registry.available()
  assert module.IMPORTS == [1]  # imported once, not re-run
  # Strict: a name that is not registered while a module failed is that failure, not "unknown".
  with pytest.raises(ImportError, match=rf"'nope'.*{package}\.broken: RuntimeError: broken on purpose"):
    registry.build("nope")


def test_build_of_an_unregistered_name_discovers_first(tmp_path, monkeypatch):
  name = _unique("lazy")
  package = _write_package(tmp_path, _unique("reward_pkg"), {
      "lazy": ("from r1jax.rewards.registry import register\n"
               f"@register({name!r})\n"
               "def build(scale=1.0):\n"
               "  return scale\n")})
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setattr(registry, "_discovery", registry._Discovery(package))
  assert registry.build(name, scale=2.0) == 2.0
  with pytest.raises(KeyError, match="unknown reward 'nope'"):  # no module failed: unknown
    registry.build("nope")


# --- the offline reasoning tasks: verifiers are rewards under the task names -------------------


def test_every_reasoning_task_has_a_verifier_reward():
  from r1jax.data import tasks

  assert set(tasks.REASONING_TASKS) <= set(registry.available())


def test_accuracy_grades_offline_tasks_with_no_registration_step():
  from r1jax.data import tasks

  acc = registry.build("accuracy", options={"math": {"num_workers": 0}})
  completions, answers, metadata, want = [], [], [], []
  for name in sorted(tasks.REASONING_TASKS):
    item = tasks.get_task(name).generate("train", 1, seed=0)[0]
    reference = item["answer"]
    if name == "countdown":
      right = item["solution"]
    elif name == "knights_knaves":
      right = ", ".join(f"{who} is a {role}" for who, role in reference.items())
    else:
      right = reference
    for text, ok in ((right, 1.0), ("no idea", 0.0)):
      completions.append(f"<think>x</think><answer>{text}</answer>")
      answers.append(reference)
      metadata.append({"task": name})
      want.append(ok)
  out = acc(completions, answers, metadata)
  assert out.scores.tolist() == want
  assert out.metrics["unrouted"] == 0
  assert all(out.metrics[f"{name}/rows"] == 2 for name in tasks.REASONING_TASKS)
