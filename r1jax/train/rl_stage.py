"""The GRPO stage loop (R1-Zero, reasoning RL, all-scenario RL): prompts -> sampler on the same
weights (G per prompt) -> rewards -> group advantages -> minibatch updates, with a reference
policy reset every N steps, checkpoints that resume exactly, metrics, evaluation and plots.

One "step" is one optimizer update on one minibatch of whole groups; one rollout feeds
`num_minibatches * num_epochs` steps (the paper: 8,192 outputs in 16 minibatches, one pass).
"""
from __future__ import annotations

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r1jax.eval.metrics import reflection_metrics
from r1jax.rewards.combine import CombinedReward
from r1jax.rl.config import GRPOConfig
from r1jax.sampling import Sampler, SamplingParams
from r1jax.train import common
from r1jax.train.checkpoint import Checkpointer, install_preemption_handler
from r1jax.train.grpo import make_ref_logprobs_fn, make_update_step, minibatch_slices, score_rollout
from r1jax.train.metrics import MetricsWriter, Progress
from r1jax.train.state import init_train_state, make_optimizer, merge, split_model

log = logging.getLogger(__name__)


def grpo_config(cfg) -> GRPOConfig:
  return GRPOConfig(**dict(cfg.grpo))


def _copy(tree):
  return jax.jit(lambda t: jax.tree.map(jnp.copy, t))(tree)


def run_rl(cfg, workdir: str) -> dict:
  """Runs (or resumes) one GRPO stage in `workdir`; returns the final metrics row."""
  from r1jax.data.config import dataset_from_config

  os.makedirs(workdir, exist_ok=True)
  install_preemption_handler()
  gcfg = grpo_config(cfg)
  prompts_per_rollout = gcfg.prompts_per_step * gcfg.num_minibatches
  if cfg.data.batch_size != prompts_per_rollout:
    raise ValueError(f"config.data.batch_size={cfg.data.batch_size} must equal grpo.prompts_per_step * "
                     f"grpo.num_minibatches = {prompts_per_rollout} (prompts per rollout)")
  common.register_task_rewards()
  mesh = common.build_mesh(cfg)
  tok = common.load_tokenizer(cfg, workdir)
  reward_fn = CombinedReward(dict(cfg.rewards.weights), options=dict(cfg.rewards.get("options", {}) or {}))
  stop_ids = tuple(tok.stop_ids) + ((tok.answer_end_id,) if cfg.sampling.get("stop_at_answer_end") else ())
  with jax.set_mesh(mesh):
    model = common.init_policy(cfg, mesh, vocab_size=tok.vocab_size)
    full_graphdef = nnx.graphdef(model)
    graphdef, params, extra = split_model(model)
    tx = make_optimizer({**dict(cfg.optim), "learning_rate": gcfg.learning_rate})
    state = init_train_state(params, extra, tx, seed=int(cfg.seed))
    ref_params = _copy(params) if gcfg.beta > 0 else None
    it = iter(dataset_from_config(cfg.data, tok))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=int(cfg.train.keep_checkpoints))
    rollout = 0
    if ckpt.latest_step() is not None:
      restored, meta = ckpt.restore({"state": state, "ref": ref_params}, data_iterator=it)
      state, ref_params, rollout = restored["state"], restored["ref"], int(meta["rollout"])
      log.info("resumed from rollout %d (step %d)", rollout, int(state.step))
    sampler = Sampler(full_graphdef, model.cfg, mesh=mesh)
    update = jax.jit(make_update_step(graphdef, tx, gcfg, router_bias_rate=float(cfg.train.router_bias_rate),
                                      use_ref=ref_params is not None), donate_argnums=0)
    ref_lp = jax.jit(make_ref_logprobs_fn(graphdef, gcfg.logprob_chunk_size))
    writer = MetricsWriter(workdir, enabled=jax.process_index() == 0)
    total = int(cfg.train.rollouts)
    bar = Progress(total, rollout, desc=cfg.get("stage", "grpo"), enabled=jax.process_index() == 0,
                   keys=("reward/mean", "accuracy/mean", "response_length/mean", "kl_mean", "step_time"))
    batch_sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp", "expert")))
    row = {}
    while rollout < total:
      t0 = time.perf_counter()
      batch = next(it)
      policy_state = nnx.state(merge(graphdef, state.params, state.extra))  # same arrays, no copy
      sp = SamplingParams(temperature=gcfg.rollout_temperature, top_p=float(cfg.sampling.top_p),
                          top_k=int(cfg.sampling.top_k), max_new_tokens=int(gcfg.max_completion_length),
                          stop_token_ids=stop_ids, seed=(int(cfg.seed) * 1_000_003 + rollout) % 2**32,
                          n=gcfg.num_generations)
      gen = sampler.generate(policy_state, batch["prompt_tokens"], sp)
      t_gen = time.perf_counter()
      # Ids past the tokenizer (padded embedding tables) have no text; they cannot be correct.
      texts = [tok.decode([t for t in c if t < tok.vocab_size]) for c in gen.completions()]
      ref_fn = None
      if ref_params is not None:
        ref_fn = lambda b: ref_lp(ref_params, state.extra, {k: jax.device_put(b[k], batch_sh) for k in
                                                            ("tokens", "targets", "positions", "segment_ids")})
      scored = score_rollout(batch["prompt_tokens"], gen, texts, batch["answers"], batch["metadata"], reward_fn,
                             gcfg, ref_logprobs_fn=ref_fn, length_multiple=int(cfg.train.length_multiple))
      t_score = time.perf_counter()
      step_metrics = []
      for _epoch in range(gcfg.num_epochs):
        # Group order per (seed, rollout, epoch): a resumed run shuffles exactly as an uninterrupted one.
        rng = np.random.default_rng([int(cfg.seed), rollout, _epoch])
        for idx in minibatch_slices(len(batch["prompt_tokens"]), gcfg.num_generations, gcfg.num_minibatches, rng):
          mb = {k: jax.device_put(np.asarray(v)[idx], batch_sh) for k, v in scored.batch.items()}
          state, m = update(state, mb)
          step_metrics.append(m)
          if ref_params is not None and gcfg.ref_update_interval and int(state.step) % gcfg.ref_update_interval == 0:
            ref_params = _copy(state.params)  # reference <- current policy (paper: every 400 steps)
      t_upd = time.perf_counter()
      rollout += 1
      m = {k: float(np.mean([float(x[k]) for x in step_metrics])) for k in step_metrics[0]}
      n_tok = float(np.sum(gen.lengths))
      row = {**scored.metrics, **m, **reflection_metrics(texts),
             "time/generate": t_gen - t0, "time/reward_and_ref": t_score - t_gen, "time/update": t_upd - t_score,
             "step_time": t_upd - t0, "tokens_per_s_per_device": n_tok / max(t_gen - t0, 1e-9) / jax.device_count(),
             "rollout": rollout, "sampler/compiles": sampler.stats.total_compiles}
      evaluate_every = int(cfg.train.get("eval_every", 0))
      if evaluate_every and (rollout % evaluate_every == 0 or rollout == total):
        row.update(_evaluate(cfg, sampler, nnx.state(merge(graphdef, state.params, state.extra)), tok, reward_fn,
                             stop_ids, rollout))
      row = writer.write(int(state.step), row)
      bar.update(row)
      ckpt.end_of_step(rollout, {"state": state, "ref": ref_params}, every=int(cfg.train.checkpoint_every),
                       last=total, data_iterator=it, meta={"rollout": rollout, "stage": cfg.get("stage", "grpo")})
    bar.close()
    ckpt.close()
    writer.close()
    reward_fn.close()
    common.export_final(merge(graphdef, state.params, state.extra), common.tokenizer_source(cfg), workdir,
                        meta=common.stage_meta(cfg))
    if jax.process_index() == 0 and cfg.train.get("plots", True):
      from r1jax.eval.plots import plot_jsonl

      plot_jsonl(writer.path, os.path.join(workdir, "plots"))
  return row


def _evaluate(cfg, sampler, params, tok, reward_fn, stop_ids, rollout) -> dict:
  from r1jax.data import tasks
  from r1jax.data.templates import build_template
  from r1jax.eval.evaluate import evaluate_policy

  e = cfg.eval
  template = build_template(cfg.data.template)
  records = tasks.get_task(e.task).generate("test", int(e.n), seed=int(e.seed), difficulty=int(e.difficulty))
  records = [dict(r, prompt=template.prompt_text(r["prompt"])) for r in records]

  def grade(texts, answers, metadata):
    return reward_fn(texts, answers, metadata).components["accuracy"]

  res = evaluate_policy(sampler, params, tok, records, benchmark=e.task, label=f"rollout {rollout}", grade=grade,
                        k=int(e.k), temperature=float(e.temperature), top_p=float(e.top_p),
                        max_new_tokens=int(e.max_new_tokens), stop_token_ids=stop_ids, seed=int(e.seed))
  return {"eval/pass@1": res.pass_at_1, "eval/cons@k": res.cons_at_k or 0.0, "eval/mean_length": res.mean_length}
