"""The one-way data flow of DESIGN.md, read from the source with `ast`: no module reaches "up".

models know nothing of RL, data or training; rl knows nothing of data files; rewards are pure
functions of text (learned reward models excepted: they wrap the policy architecture); the
sampler knows the model only; data knows no model.
"""
import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "r1jax")

FORBIDDEN = {
    "models": {"rl", "rewards", "data", "train", "sampling", "eval", "convert", "cli"},
    "parallel": {"rl", "rewards", "data", "train", "sampling", "eval", "convert", "cli"},
    "convert": {"rl", "rewards", "data", "train", "sampling", "eval", "cli"},
    "rl": {"data", "train", "sampling", "rewards", "eval", "convert", "cli"},
    "rewards": {"rl", "data", "train", "sampling", "eval", "convert", "cli", "models", "parallel"},
    "sampling": {"rl", "rewards", "data", "train", "eval", "cli"},
    "data": {"models", "rl", "rewards", "train", "sampling", "eval", "convert", "cli"},
    "eval": {"train", "cli"},
    "train": {"cli"},
}
# Learned reward models wrap the policy architecture (DESIGN.md) and tokenize their input.
EXCEPTIONS = {("rewards/model.py", "models"), ("rewards/model.py", "convert"), ("rewards/model.py", "parallel"),
              ("rewards/model.py", "data")}  # it tokenizes prompt + response itself


def _imports(path):
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        yield a.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      yield node.module


def _modules():
  for root, _, files in os.walk(PKG):
    for f in files:
      if f.endswith(".py"):
        full = os.path.join(root, f)
        yield os.path.relpath(full, PKG), full


def test_there_are_modules_to_check():
  assert sum(1 for _ in _modules()) > 40


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_reaches_up(layer):
  bad = []
  for rel, full in _modules():
    if rel.split(os.sep)[0] != layer:
      continue
    for name in _imports(full):
      parts = name.split(".")
      if parts[0] == "r1jax" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
        if (rel.replace(os.sep, "/"), parts[1]) not in EXCEPTIONS:
          bad.append(f"{rel} imports {name}")
  assert not bad, "\n".join(bad)
