"""Evaluation stage: several checkpoints (one column each) on held-out problems, k samples per
question at T = 0.6, top-p 0.95 -> pass@1, cons@k, pass@k, mean length; JSON + a Markdown table
like the paper's Table 3."""
from __future__ import annotations

import logging

import jax
from flax import nnx

from r1jax import fs
from r1jax.eval.evaluate import evaluate_policy, trained_format
from r1jax.eval.report import markdown_table, write_json
from r1jax.rewards.combine import CombinedReward
from r1jax.sampling import Sampler
from r1jax.train import common
from r1jax.train.stage_run import StageRun

log = logging.getLogger(__name__)


def _template_for(cfg, checkpoint: str):
  """The prompt template the checkpoint was trained with (its stage metadata), else the config's."""
  from r1jax.data.templates import build_template

  meta_path = fs.join(checkpoint, common.STAGE_META)
  if fs.exists(meta_path):
    t = fs.read_json(meta_path).get("template")
    if t:
      return build_template(t)
  return build_template(cfg.data.template)


def _benchmarks(cfg):
  """[(name, records)]: offline task test splits (raw problems; evaluate_policy renders them)."""
  from r1jax.data import tasks

  out = []
  for name in [t.strip() for t in cfg.eval.tasks.split(",") if t.strip()]:
    recs = tasks.get_task(name).generate("test", int(cfg.eval.n), seed=int(cfg.eval.seed),
                                         difficulty=int(cfg.eval.difficulty))
    out.append((name, recs))
  return out


def parse_checkpoints(spec: str) -> dict[str, str]:
  """"label=dir,label=dir" -> {label: dir} in order; errors name the bad entry."""
  out: dict[str, str] = {}
  for item in [s.strip() for s in str(spec).split(",") if s.strip()]:
    label, sep, path = item.partition("=")
    if not sep or not label or not path:
      raise ValueError(f"config.checkpoints: entry {item!r} is not label=directory")
    if label in out:
      raise ValueError(f"config.checkpoints: label {label!r} given twice")
    out[label] = path
  return out


def check_evaluate_config(cfg) -> dict[str, str]:
  """Start-of-run checks; returns {label: checkpoint dir}."""
  from r1jax.train.config_check import (ConfigError, check_checkpoint_dir, check_registry_names,
                                        check_task_names, need_sections)

  need_sections(cfg, ("checkpoints", "eval", "data", "sampling"))
  if not [t for t in str(cfg.eval.tasks).split(",") if t.strip()]:
    raise ConfigError("config.eval.tasks: name at least one task (comma-separated)")
  check_task_names(cfg.eval.tasks, "eval.tasks", comma=True)
  check_registry_names(cfg)  # data.template: the fallback for checkpoints that do not name theirs
  try:
    checkpoints = parse_checkpoints(cfg.checkpoints)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if not checkpoints:
    raise ConfigError("config.checkpoints: give at least one label=directory")
  for label, path in checkpoints.items():
    check_checkpoint_dir(path, f"checkpoints.{label}")
  return checkpoints


def run_evaluate(cfg, workdir: str, checkpoints: dict[str, str] | None = None) -> list:
  """cfg.checkpoints: "label=dir,..." (HF-format directories); returns the EvalResults (also written)."""
  from r1jax.convert.hf import load_hf_model
  from r1jax.data.tokenizer import load_tokenizer

  run = StageRun(cfg, workdir, default_name="evaluate", tokenizer=False, checkpoints=False, tensorboard=False)
  mesh = run.mesh
  grader = CombinedReward({"accuracy": 1.0})
  results = []
  e = cfg.eval
  checkpoints = checkpoints if checkpoints is not None else check_evaluate_config(cfg)
  with run:
    for label, path in checkpoints.items():
      tok = load_tokenizer(path if not cfg.tokenizer.path else cfg.tokenizer.path)
      stop_ids = tok.sampling_stop_ids(bool(cfg.sampling.get("stop_at_answer_end")))
      _, model = load_hf_model(path, mesh=mesh)
      sampler, params = Sampler.from_model(model, mesh=mesh)
      template = _template_for(cfg, path)
      for name, records in _benchmarks(cfg):
        res = evaluate_policy(sampler, params, tok, template, records, benchmark=name, label=label,
                              grade=lambda t, a, m: grader(t, a, m).components["accuracy"], k=int(e.k),
                              temperature=float(e.temperature), top_p=float(e.top_p),
                              max_new_tokens=int(e.max_new_tokens), stop_token_ids=stop_ids, seed=int(e.seed),
                              format_fn=trained_format(template))
        results.append(res)
        run.log(len(results), {"label": label, "benchmark": name, "eval/pass@1": res.pass_at_1,
                               "eval/pass@1_se": res.pass_at_1_stderr, "eval/cons@k": res.cons_at_k or 0.0})
        log.info("%s on %s: pass@1 %.3f ± %.3f cons@%d %.3f", label, name, res.pass_at_1, res.pass_at_1_stderr,
                 res.k, res.cons_at_k or 0)
      del model, sampler, params
  grader.close()
  if jax.process_index() == 0:
    write_json(results, fs.join(workdir, "eval_results.json"))
    table = markdown_table(results, labels=list(checkpoints), include_length=True)
    fs.write_text(fs.join(workdir, "eval_table.md"), table + "\n")
    print(table)
  return results
