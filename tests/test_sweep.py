"""Sweeps (r1jax.sweep): a sweep file expands into runs with readable, stable names; every run's config
is validated before any starts; runs go one after another as `python -m r1jax` processes, a failed
run is reported and the others go on, finished runs are skipped on a re-run; the dry run prints
commands that split back to the exact argv; the tables hold the last value of each chosen metric.

The end-to-end test runs a real 2 x 2 micro SFT sweep (cold_start.py:tiny, 2-3 steps, micro shapes).
"""
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from r1jax.sweep import SweepError, load_sweep, product
from r1jax.sweep import zip as sweep_zip
from r1jax.sweep import runner, table
from r1jax.sweep.command import sweep_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLD_START = os.path.join(ROOT, "experiments", "cold_start.py") + ":tiny"
# tests/train/test_stages.py SFT_MICRO: an SFT stage in seconds.
SFT_MICRO = {"train.log_every": 1, "data.batch_size": 4, "data.seq_len": 128, "data.corpus_size": 64,
             "tokenizer.vocab_size": 400, "train.logprob_chunk_size": 128, "train.progress": False}


def _sweep_file(tmp_path, body: str, name: str = "micro.py") -> str:
  path = tmp_path / name
  path.write_text("from r1jax import sweep\n\n\ndef get_sweep():\n" + textwrap.indent(textwrap.dedent(body), "  "))
  return str(path)


def _micro(tmp_path, *, lrs=(1e-3, 2e-3), extra_fixed="", key="optim.learning_rate") -> str:
  fixed = dict(SFT_MICRO, compilation_cache_dir=str(tmp_path / "jax_cache"))
  return _sweep_file(tmp_path, f"""
      return dict(
          name="micro",
          config={COLD_START!r},
          sweep=sweep.product(({key!r}, {list(lrs)!r}), ("train.steps", [2, 3])),
          fixed={{**{fixed!r}, {extra_fixed}}},
          names={{{key!r}: "lr"}},
          metrics=("train/loss", "train/grad_norm", "eval/*"),
      )
  """)


def _env():
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # the runs use one CPU device (micro batches need not split 8 ways)
  env["PYTHONPATH"] = ROOT
  return env


def _csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------ the format


def test_product_and_zip_expand_in_a_stable_order():
  g = product(("a.x", [1, 2]), sweep_zip(("b.y", [0.1, 0.2]), ("c.z", {"small": (1,), "big": (1, 2)})))
  assert g.keys == ("a.x", "b.y", "c.z")
  assert [[v for _, v in p] for p in g.points] == [[1, 0.1, (1,)], [1, 0.2, (1, 2)], [2, 0.1, (1,)], [2, 0.2, (1, 2)]]
  assert [p[2][0] for p in g.points] == ["small", "big"] * 2
  with pytest.raises(SweepError, match="zip: lengths differ"):
    sweep_zip(("a", [1, 2]), ("b", [1, 2, 3]))
  with pytest.raises(SweepError, match="key 'a' is swept twice"):
    product(("a", [1]), ("a", [2]))
  with pytest.raises(SweepError, match="product entry 1: 'b' has no values"):
    product(("a", [1]), ("b", []))
  with pytest.raises(SweepError, match="product entry 0: values of 'a' must be a list"):
    product(("a", 0.1))
  with pytest.raises(SweepError, match="cannot be written as a command-line flag"):
    product(("a", [object()]))


def test_sweep_file_names_runs_and_validates_its_entries(tmp_path):
  path = _sweep_file(tmp_path, f"""
      return dict(config={COLD_START!r},
                  sweep=sweep.product(("optim.learning_rate", [1e-5, 5e-5]), ("grpo.beta", [0.0, 0.001]),
                                      ("data.spec.paths", {{"math": ("/d/math.jsonl",), "both": ("/a b", "/c")}})),
                  fixed={{"train.steps": 3}}, names={{"optim.learning_rate": "lr"}}, metrics="eval/pass@1")
  """, name="lr_beta.py")
  s = load_sweep(path)
  assert s.name == "lr_beta" and s.metrics == ("eval/pass@1",) and len(s.runs) == 8
  assert [r.name for r in s.runs[:3]] == ["lr=1e-05,beta=0.0,paths=math", "lr=1e-05,beta=0.0,paths=both",
                                          "lr=1e-05,beta=0.001,paths=math"]
  assert s.runs[0].overrides == (("train.steps", 3), ("optim.learning_rate", 1e-5), ("grpo.beta", 0.0),
                                 ("data.spec.paths", ("/d/math.jsonl",)))
  # Values without labels are sanitised into the directory name.
  s2 = load_sweep(_sweep_file(tmp_path, f"""
      return dict(config={COLD_START!r}, sweep=sweep.product(("data.spec.paths", [("/d/x y.jsonl",), ("/e",)])))
  """, name="paths.py"))
  assert [r.name for r in s2.runs] == ["paths=d_x_y.jsonl", "paths=e"]
  # One factor alone, or the runs listed one by one.
  s3 = load_sweep(_sweep_file(tmp_path, f"return dict(config={COLD_START!r}, sweep=('seed', [0, 1]))\n", "one.py"))
  assert [r.name for r in s3.runs] == ["seed=0", "seed=1"]
  s4 = load_sweep(_sweep_file(tmp_path, f"""
      return dict(config={COLD_START!r}, sweep=[{{"optim.b1": 0.9, "stage": "u"}}, {{"optim.b1": 0.8, "stage": "v"}}])
  """, name="listed.py"))
  assert [r.name for r in s4.runs] == ["b1=0.9,stage=u", "b1=0.8,stage=v"] and s4.keys == ("optim.b1", "stage")

  bad = {
      "metric=('eval/pass@1',)": "unknown entry 'metric' \\(did you mean 'metrics'\\?\\)",
      "sweep=sweep.product(('optim.learning_rate', 1e-5))": "'optim.learning_rate' must be a list",
      "sweep=sweep.product(('a', [1])), fixed={'a': 2}": "'fixed': 'a' is also swept",
      "sweep=sweep.product(('a b', [1]))": "'a b' is not a dotted config key",
      "sweep=sweep.product(('a', ['x/y', 'x_y']))": "runs 1 and 2 get the same directory name 'a=x_y'",
      "sweep=sweep.product(('a', [1])), names={'b': 'bb'}": "names\\['b'\\]: not a swept key",
  }
  for i, (entry, message) in enumerate(bad.items()):
    p = _sweep_file(tmp_path, f"return dict(config={COLD_START!r}, {entry})\n", name=f"bad{i}.py")
    with pytest.raises(SweepError, match=message) as e:
      load_sweep(p)
    assert str(e.value).startswith(p), e.value  # names the sweep file
  p = _sweep_file(tmp_path, "return dict(config='experiments/nope.py:tiny')\n", name="nofile.py")
  with pytest.raises(SweepError, match=f"{p}: 'config': 'experiments/nope.py' not found"):
    load_sweep(p)


def test_only_selects_by_index_range_name_and_glob(tmp_path):
  s = load_sweep(_micro(tmp_path))
  names = [r.name for r in s.runs]
  assert names == ["lr=0.001,steps=2", "lr=0.001,steps=3", "lr=0.002,steps=2", "lr=0.002,steps=3"]
  assert [r.name for r in runner.select(s, ["4", "1"])] == [names[0], names[3]]
  assert [r.name for r in runner.select(s, ["2-3"])] == names[1:3]
  assert [r.name for r in runner.select(s, ["lr=0.002,*"])] == names[2:]
  assert [r.name for r in runner.select(s, [names[1]])] == [names[1]]
  with pytest.raises(SweepError, match="--only='lr=9' matches no run"):
    runner.select(s, ["lr=9"])


# ------------------------------------------------------------------------------------ before any run


def test_dry_run_prints_commands_that_split_back_to_the_argv(tmp_path, capsys):
  paths = {"one": ("/data/my file.jsonl",), "two": ("/a'b.jsonl", "/c.jsonl")}
  path = _sweep_file(tmp_path, f"""
      return dict(config={COLD_START!r},
                  sweep=sweep.product(("data.spec.paths", {paths!r}), ("optim.learning_rate", [1e-3, 5e-5])),
                  fixed={{"stage": "my stage", "train.steps": 2}})
  """)
  workdir = str(tmp_path / "sw")
  assert sweep_command(path, workdir, dry_run=True, python="python") == 0  # validated too
  lines = capsys.readouterr().out.splitlines()
  s = load_sweep(path)
  assert len(lines) == 4 and not os.path.exists(workdir)
  for line, run in zip(lines, s.runs):
    argv = shlex.split(line)
    assert argv == runner.launch_argv(s, run, workdir, "python")
    assert argv[:5] == ["python", "-m", "r1jax", f"--config={COLD_START}", f"--workdir={workdir}/{run.name}"]
  assert shlex.split(lines[1])[-2:] == ['--config.data.spec.paths=("/data/my file.jsonl",)',
                                        "--config.optim.learning_rate=5e-05"]
  assert "--config.stage=my stage" in shlex.split(lines[0])
  # What r1jax's own flag parser makes of the pasted command: the sweep file's values.
  cfg = runner._parse_config(["r1jax", *shlex.split(lines[2])[3:4], *shlex.split(lines[2])[5:]])
  assert cfg.data.spec.paths == ("/a'b.jsonl", "/c.jsonl") and cfg.optim.learning_rate == 1e-3
  assert cfg.stage == "my stage"


def test_a_bad_key_fails_the_sweep_before_any_run(tmp_path, monkeypatch, capsys):
  def no_run(*a):
    raise AssertionError("a run started")

  monkeypatch.setattr(runner, "execute", no_run)
  workdir = str(tmp_path / "sw")
  assert sweep_command(_micro(tmp_path, key="optim.learnin_rate"), workdir) == 2
  err = capsys.readouterr().err
  assert "run 'lr=0.001,steps=2'" in err and "--config.optim.learnin_rate" in err, err
  assert "did you mean 'learning_rate'" in err, err
  assert not os.path.exists(workdir)
  # A value the stage's own check rejects (a non-positive learning rate) names the run and the key.
  assert sweep_command(_micro(tmp_path, lrs=(1e-3, -1.0)), workdir) == 2
  err = capsys.readouterr().err
  assert "run 'lr=-1.0,steps=2'" in err and "config.optim.learning_rate: must be > 0" in err, err
  # A value of the wrong type for its field.
  assert sweep_command(_micro(tmp_path, lrs=(1e-3, "fast")), workdir) == 2
  assert "run 'lr=fast,steps=2'" in capsys.readouterr().err
  assert not os.path.exists(workdir)


# ------------------------------------------------------------------------------------ running


FAKE_R1JAX = """#!{python}
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
if args["config.optim.learning_rate"] == "0.002" and args["config.train.steps"] == "2":
  sys.exit("boom: this run fails at start")
os.makedirs(args["workdir"], exist_ok=True)
with open(os.path.join(args["workdir"], "metrics.jsonl"), "a") as f:
  for step in range(1, int(args["config.train.steps"]) + 1):
    f.write(json.dumps({{"step": step, "train/loss": 1.0 / step, "label": "x"}}) + "\\n")
"""


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path, capsys):
  fake = tmp_path / "fake_python"
  fake.write_text(FAKE_R1JAX.format(python=sys.executable))
  fake.chmod(0o755)
  path, workdir = _micro(tmp_path), str(tmp_path / "sw")
  assert sweep_command(path, workdir, python=str(fake), validate=False) == 1
  out = capsys.readouterr().out
  assert "[3/4] lr=0.002,steps=2 ... FAILED (exit 1)" in out and "[4/4] lr=0.002,steps=3 ... done in" in out, out
  assert "failed: lr=0.002,steps=2 (exit 1): boom: this run fails at start" in out, out
  assert os.path.join(workdir, "lr=0.002,steps=2", "sweep.log") in out
  rows = _csv(os.path.join(workdir, "sweep.csv"))
  assert [r["status"] for r in rows] == ["done", "done", "failed", "done"]
  assert [r["train/loss"] for r in rows] == [repr(0.5), repr(1 / 3), "", repr(1 / 3)]  # missing: empty, never 0
  assert list(rows[0]) == ["run", "optim.learning_rate", "train.steps", "status", "wall_s", "train/loss",
                           "train/grad_norm"]  # "eval/*" matched nothing
  assert rows[0]["train/grad_norm"] == ""
  done = json.load(open(os.path.join(workdir, "lr=0.001,steps=2", runner.DONE)))
  assert done["returncode"] == 0 and done["command"][0] == str(fake) and done["wall_s"] > 0
  # Again: the three finished runs are skipped, the failed one is rerun (and fails again).
  assert sweep_command(path, workdir, python=str(fake), validate=False) == 1
  out = capsys.readouterr().out
  assert out.count(", skipped") == 3 and "1 failed" in out, out
  assert open(os.path.join(workdir, "lr=0.002,steps=2", "sweep.log")).read().count("=== ") == 2


def test_tables_read_pipeline_stage_metrics_and_eval_results(tmp_path):
  from r1jax.eval.report import EvalResult, write_json

  path = _sweep_file(tmp_path, f"""
      return dict(config={COLD_START!r}, sweep=sweep.product(("seed", [0, 1])),
                  metrics=("*/pass@1", "reasoning_rl/train/loss", "missing/key"))
  """)
  s, workdir = load_sweep(path), str(tmp_path / "sw")
  run0 = os.path.join(workdir, "seed=0")
  os.makedirs(os.path.join(run0, "reasoning_rl"))
  with open(os.path.join(run0, "reasoning_rl", "metrics.jsonl"), "w") as f:
    f.write('{"step": 5, "eval/pass@1": 0.25, "train/loss": 2.0}\n{"step": 10, "eval/pass@1": 0.5}\n{"step": 1')
  write_json([EvalResult("addition", "base", 0.4, 128, 4, cons_at_k=0.5),
              EvalResult("addition", "r1", 0.8, 128, 4)], os.path.join(run0, "evaluate", "eval_results.json"))
  paths = table.write_tables(s, workdir)
  rows = _csv(paths["csv"])
  assert list(rows[0]) == ["run", "seed", "status", "wall_s", "base/pass@1", "r1/pass@1",
                           "reasoning_rl/eval/pass@1", "reasoning_rl/train/loss", "missing/key"]
  assert [rows[0][k] for k in list(rows[0])[4:]] == ["0.4", "0.8", "0.5", "2.0", ""]
  assert rows[1]["status"] == "pending" and all(rows[1][k] == "" for k in list(rows[1])[3:])
  md = open(paths["md"]).read()
  assert "| seed=0 | 0 | pending |  | 0.4 | 0.8 | 0.5 | 2 |  |" in md, md
  assert os.path.getsize(paths["png"]) > 1000


@pytest.mark.slow
def test_micro_sft_sweep_runs_for_real_then_skips_when_done(tmp_path, monkeypatch, capsys):
  path, workdir = _micro(tmp_path), str(tmp_path / "sw")
  p = subprocess.run([sys.executable, "-m", "r1jax.sweep", f"--sweep={path}", f"--workdir={workdir}"],
                     cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
  for i, name in enumerate(["lr=0.001,steps=2", "lr=0.001,steps=3", "lr=0.002,steps=2", "lr=0.002,steps=3"], 1):
    assert f"[{i}/4] {name} ... done in " in p.stdout, p.stdout
    assert os.path.exists(os.path.join(workdir, name, "final", "config.json"))
  rows = _csv(os.path.join(workdir, "sweep.csv"))
  assert len(rows) == 4
  assert [(r["optim.learning_rate"], r["train.steps"]) for r in rows] == [
      ("0.001", "2"), ("0.001", "3"), ("0.002", "2"), ("0.002", "3")]
  assert all(r["status"] == "done" and float(r["wall_s"]) > 0 for r in rows)
  assert all(math.isfinite(float(r["train/loss"])) and math.isfinite(float(r["train/grad_norm"])) for r in rows)
  assert os.path.getsize(os.path.join(workdir, "sweep.png")) > 1000
  assert open(os.path.join(workdir, "sweep.md")).read().count("| lr=0.00") == 4
  # The last loss in the table is the run's last logged one.
  last = json.loads(open(os.path.join(workdir, "lr=0.002,steps=3", "metrics.jsonl")).read().splitlines()[-1])
  assert last["step"] == 3 and float(rows[3]["train/loss"]) == last["train/loss"]

  # A re-run starts no process: every run is done.
  def no_run(*a):
    raise AssertionError("a finished run was started again")

  monkeypatch.setattr(runner, "execute", no_run)
  assert sweep_command(path, workdir, validate=False) == 0
  out = capsys.readouterr().out
  assert out.count(", skipped") == 4 and "0 ran, 4 skipped" in out, out
  assert _csv(os.path.join(workdir, "sweep.csv")) == rows
