"""Evaluation stage: several checkpoints (one column each) on held-out problems (offline task test
splits, and the paper's benchmarks from local files: train/eval_sets.py), k samples per question
at T = 0.6, top-p 0.95 -> pass@1, cons@k, pass@k, mean length; JSON, a Markdown table of every
metric (eval_table.md) and, for the benchmark files, the paper's Table 3 (paper_table.md)."""
from __future__ import annotations

import logging

import jax
from flax import nnx

from r1jax import fs
from r1jax.eval.evaluate import consensus_answer, evaluate_policy, trained_format
from r1jax.eval.report import markdown_table, write_json
from r1jax.sampling import Sampler
from r1jax.train import common
from r1jax.train.eval_sets import Grader, check_eval_sets, load_eval_sets, parse_assignments
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


def parse_checkpoints(spec: str) -> dict[str, str]:
  """"label=dir,label=dir" -> {label: dir} in order; errors name the bad entry."""
  return parse_assignments(spec, "checkpoints", "label=directory")


def check_evaluate_config(cfg) -> dict[str, str]:
  """Start-of-run checks; returns {label: checkpoint dir}."""
  from r1jax.train.config_check import ConfigError, check_checkpoint_dir, check_registry_names, need_sections

  need_sections(cfg, ("checkpoints", "eval", "data", "sampling"))
  check_eval_sets(cfg)
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
  results = []
  e = cfg.eval
  checkpoints = checkpoints if checkpoints is not None else check_evaluate_config(cfg)
  eval_sets = load_eval_sets(cfg)  # every file read (and checked) before any checkpoint loads
  grader = Grader(cfg, [r["task"] for s in eval_sets for r in s.records])
  try:
    with run:
      for label, path in checkpoints.items():
        tok = load_tokenizer(path if not cfg.tokenizer.path else cfg.tokenizer.path)
        stop_ids = tok.sampling_stop_ids(bool(cfg.sampling.get("stop_at_answer_end")))
        _, model = load_hf_model(path, mesh=mesh)
        sampler, params = Sampler.from_model(model, mesh=mesh)
        template = _template_for(cfg, path)
        for s in eval_sets:
          res = evaluate_policy(sampler, params, tok, template, s.records, benchmark=s.name, label=label,
                                grade=grader, k=s.k, temperature=float(e.temperature), top_p=float(e.top_p),
                                max_new_tokens=int(e.max_new_tokens), stop_token_ids=stop_ids, seed=int(e.seed),
                                batch_prompts=int(e.get("batch_prompts", 64)), format_fn=trained_format(template),
                                answer_fn=consensus_answer(s.task))
          res.extra.update(task=s.task, grading=grader.take_counts(), **({"file": s.source} if s.source else {}))
          if res.extra["grading"]:
            log.warning("%s on %s: grading problems %s", label, s.name, res.extra["grading"])
          results.append(res)
          row = {"label": label, "benchmark": s.name, "eval/pass@1": res.pass_at_1, "eval/pass@1_se": res.pass_at_1_stderr}
          if res.cons_at_k is not None:
            row["eval/cons@k"] = res.cons_at_k
          run.log(len(results), row)
          log.info("%s on %s: pass@1 %.3f ± %.3f cons@%d %s", label, s.name, res.pass_at_1, res.pass_at_1_stderr,
                   res.k, "-" if res.cons_at_k is None else f"{res.cons_at_k:.3f}")
        del model, sampler, params
  finally:
    grader.close()
  if jax.process_index() == 0:
    write_json(results, fs.join(workdir, "eval_results.json"))
    table = markdown_table(results, labels=list(checkpoints), include_length=True)
    fs.write_text(fs.join(workdir, "eval_table.md"), table + "\n")
    print(table)
    paper = paper_table(results, list(checkpoints))
    if paper is not None:
      fs.write_text(fs.join(workdir, "paper_table.md"), paper + "\n")
      print(paper)
  return results


def paper_table(results, labels) -> str | None:
  """Table 3 of the paper over the benchmark results: its rows (AIME 2024 pass@1 and cons@64,
  MATH-500, GPQA Diamond and LiveCodeBench pass@1, ± one standard error), one column per
  checkpoint; None when no benchmark file was evaluated."""
  from r1jax.data.benchmarks import BENCHMARKS

  ours = [r for r in results if r.benchmark in BENCHMARKS]
  if not ours:
    return None
  names = [b for b in BENCHMARKS if any(r.benchmark == b for r in ours)]  # the paper's row order
  ours.sort(key=lambda r: names.index(r.benchmark))
  return markdown_table(ours, labels=labels, include_pass_at_k=False,
                        metrics={b: BENCHMARKS[b].metrics for b in names},
                        names={b: BENCHMARKS[b].title for b in names})
