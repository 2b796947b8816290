"""Workdirs on object stores: r1jax reads and writes them through `r1jax.fs` (etils.epath), never
through `os.path` / `open`, so `gs://…` works as a local path does.

The bucket is `tests/memory_bucket.py`, an fsspec store registered for gs://: nothing reaches the
local disk, and a path mangled by `os.path` (`<cwd>/gs:/b/…`) shows as a stray local `gs:` entry.
"""
import ast
import json
import os

import numpy as np
import pytest

from r1jax import fs
from tests.memory_bucket import memory_bucket

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "r1jax")


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # where a mangled gs:// path would land
  with memory_bucket() as store:
    yield store
  assert not any(name.startswith("gs") for name in os.listdir(tmp_path)), os.listdir(tmp_path)


def test_paths_keep_urls_and_make_local_paths_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert fs.name("gs://b/run/x") == "gs://b/run/x"
  assert fs.join("gs://b/run", "final", "config.json") == "gs://b/run/final/config.json"
  assert fs.name("runs/a") == os.path.join(str(tmp_path), "runs", "a")
  assert fs.is_remote("s3://b/k") and not fs.is_remote("/tmp/x")


def test_file_operations_on_the_bucket(bucket):
  fs.write_text("gs://b/run/a.txt", "héllo")
  assert fs.read_text("gs://b/run/a.txt") == "héllo" and fs.isfile("gs://b/run/a.txt")
  assert fs.isdir("gs://b/run") and fs.listdir("gs://b/run") == ["a.txt"]
  fs.append_text("gs://b/run/m.jsonl", "1\n")
  fs.append_text("gs://b/run/m.jsonl", "2\n")
  assert fs.read_text("gs://b/run/m.jsonl") == "1\n2\n"
  fs.write_json("gs://b/run/s.json", {"k": [1, 2]})
  assert fs.read_json("gs://b/run/s.json") == {"k": [1, 2]}
  with fs.staged_dir("gs://b/run/final", last=("config.json",)) as local:
    assert not fs.is_remote(local)
    for name in ("config.json", "model.safetensors"):
      with open(os.path.join(local, name), "w") as f:
        f.write(name)
  assert fs.listdir("gs://b/run/final") == ["config.json", "model.safetensors"]
  # The completion marker is uploaded last: a reader that sees it sees the whole directory.
  assert list(bucket)[-1] == "/b/run/final/config.json"
  with pytest.raises(RuntimeError):  # a failed export publishes nothing, keeps the old one
    with fs.staged_dir("gs://b/run/final") as local:
      raise RuntimeError("boom")
  assert fs.read_text("gs://b/run/final/config.json") == "config.json"
  fs.rmtree("gs://b/run/final")
  assert not fs.exists("gs://b/run/final/config.json")
  with fs.local_copy("gs://b/run/a.txt") as local:
    assert open(local, encoding="utf-8").read() == "héllo"


def test_local_writes_are_atomic_and_staged_dirs_replace(tmp_path):
  target = tmp_path / "d" / "x.json"
  fs.write_json(target, {"a": 1})
  assert json.load(open(target)) == {"a": 1}
  assert os.listdir(tmp_path / "d") == ["x.json"]  # no temp file left
  out = tmp_path / "final"
  for content in ("old", "new"):
    with fs.staged_dir(out) as local:
      open(os.path.join(local, "f"), "w").write(content)
  assert os.listdir(out) == ["f"] and open(out / "f").read() == "new"
  assert not os.path.exists(str(out) + ".tmp")


def test_checkpointer_hands_orbax_the_url_unmangled(monkeypatch):
  import orbax.checkpoint as ocp

  from r1jax.train.checkpoint import Checkpointer

  seen = []

  class Recorder:
    def __init__(self, directory, **kwargs):
      seen.append(os.fspath(directory))

  monkeypatch.setattr(ocp, "CheckpointManager", Recorder)
  assert Checkpointer("gs://b/run/checkpoints").directory == "gs://b/run/checkpoints"
  assert seen == ["gs://b/run/checkpoints"]


# Call sites that would mangle a URL or write past the abstraction, in the modules that handle
# workdirs. `os.path.join` on a local temp dir is fine; `os.path.abspath(__file__)` finds code.
_FORBIDDEN_CALLS = {"open", "os.makedirs", "os.path.abspath", "os.path.exists", "os.path.isdir",
                    "os.path.isfile", "os.replace", "os.rename", "os.listdir", "shutil.copy", "shutil.rmtree",
                    "shutil.copyfile"}
_WORKDIR_MODULES = ("train", "eval", os.path.join("data", "tokenizer.py"), os.path.join("data", "sources.py"),
                    os.path.join("rewards", "model.py"), os.path.join("convert", "safetensors_io.py"), "cli.py")
# Writers of a local staging directory (their callers publish it with fs.staged_dir), the local
# branch of an atomic write, and experiment files (code, in the checkout).
_ALLOWED = {("rewards/model.py", "open"), ("convert/safetensors_io.py", "open"), ("train/pipeline.py", "os.path.exists"),
            ("convert/safetensors_io.py", "os.replace"), ("convert/safetensors_io.py", "os.makedirs"),
            ("data/sources.py", "os.replace")}


def _dotted(node):
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    inner = _dotted(node.value)
    return f"{inner}.{node.attr}" if inner else None
  return None


def test_workdir_modules_use_the_path_abstraction():
  bad = []
  for root, _, files in os.walk(PKG):
    for f in files:
      full = os.path.join(root, f)
      rel = os.path.relpath(full, PKG)
      if not f.endswith(".py") or not rel.startswith(_WORKDIR_MODULES):
        continue
      for node in ast.walk(ast.parse(open(full).read(), full)):
        if isinstance(node, ast.Call):
          name = _dotted(node.func)
          arg = ast.unparse(node.args[0]) if node.args else ""
          if name in _FORBIDDEN_CALLS and (rel.replace(os.sep, "/"), name) not in _ALLOWED \
              and arg != "__file__":
            bad.append(f"{rel}:{node.lineno}: {name}({arg})")
  assert not bad, "use r1jax.fs for workdir paths:\n" + "\n".join(bad)


@pytest.mark.slow
def test_sft_then_evaluate_with_workdirs_in_a_bucket(bucket, tmp_path, monkeypatch, devices8):
  """A cold-start SFT stage and an evaluation of its export, both with gs:// workdirs: tokenizer,
  synthetic corpus, metrics, TensorBoard events, the export and the eval table land in the bucket;
  the export loads back from it. orbax keeps its own gs:// support (google-cloud-storage), so its
  checkpoints go to a local directory here, after checking it was handed the URL untouched."""
  from r1jax.convert.safetensors_io import TensorReader
  from r1jax.train import stage_run
  from r1jax.train.checkpoint import Checkpointer
  from r1jax.train.pipeline import load_experiment
  from r1jax.train.stages import run_stage

  given = []

  class LocalOrbax(Checkpointer):
    def __init__(self, directory, **kwargs):
      given.append(directory)
      super().__init__(str(tmp_path / "orbax" / directory.replace("gs://", "")), **kwargs)

  monkeypatch.setattr(stage_run, "Checkpointer", LocalOrbax)
  root = os.path.join(os.path.dirname(PKG), "experiments")
  sft = load_experiment("cold_start.py:tiny", root)
  sft.train.steps, sft.train.log_every, sft.train.checkpoint_every, sft.train.progress = 2, 1, 1, False
  sft.data.batch_size, sft.data.seq_len, sft.data.corpus_size, sft.tokenizer.vocab_size = 8, 256, 32, 400
  run_stage(sft, "gs://b/runs/sft")
  assert given == ["gs://b/runs/sft/checkpoints"]
  files = set(bucket)
  for name in ("tokenizer.model", "data/cold_start.jsonl", "metrics.jsonl", "final/config.json",
               "final/model.safetensors", "final/tokenizer.model", "final/r1jax_stage.json"):
    assert f"/b/runs/sft/{name}" in files, (name, sorted(files))
  assert any(f.startswith("/b/runs/sft/tb/events.out.tfevents") for f in files)
  rows = [json.loads(line) for line in fs.read_text("gs://b/runs/sft/metrics.jsonl").splitlines()]
  assert [r["step"] for r in rows] == [1, 2] and np.isfinite(rows[-1]["train/loss"])

  # The export read back by byte ranges from the bucket equals the uploaded file.
  from safetensors.numpy import load as load_bytes

  reader = TensorReader("gs://b/runs/sft/final")
  uploaded = load_bytes(fs.read_bytes("gs://b/runs/sft/final/model.safetensors"))
  assert reader.keys() == set(uploaded)
  for k in uploaded:
    np.testing.assert_array_equal(reader.get(k), uploaded[k], err_msg=k)

  ev = load_experiment("evaluate.py:tiny", root)
  ev.checkpoints = "sft=gs://b/runs/sft/final"
  ev.eval.tasks, ev.eval.n, ev.eval.k, ev.eval.max_new_tokens, ev.progress = "countdown", 2, 1, 8, False
  run_stage(ev, "gs://b/runs/eval")
  results = fs.read_json("gs://b/runs/eval/eval_results.json")["results"]
  assert [r["label"] for r in results] == ["sft"] and results[0]["num_problems"] == 2
  assert "sft" in fs.read_text("gs://b/runs/eval/eval_table.md").splitlines()[0]
