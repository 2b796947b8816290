"""The GRPO stage loop (R1-Zero, reasoning RL, all-scenario RL): prompts -> sampler on the same
weights (G per prompt) -> rewards -> group advantages -> minibatch updates, with a reference
policy reset every N steps, checkpoints that resume exactly, metrics, evaluation and plots.

One "step" is one optimizer update on one minibatch of whole groups; one rollout feeds
`num_minibatches * num_epochs` steps (the paper: 8,192 outputs in 16 minibatches, one pass).
"""
from __future__ import annotations

import dataclasses
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
from r1jax.train.rollout import Rollout, fill_rollout
from r1jax.train.state import init_train_state, make_optimizer, merge, split_model

log = logging.getLogger(__name__)


def grpo_config(cfg) -> GRPOConfig:
  return GRPOConfig(**dict(cfg.grpo))


# One jitted copy for every reference reset (a fresh jit per call would recompile each time).
copy_tree = jax.jit(lambda t: jax.tree.map(jnp.copy, t))

# Per-minibatch update metrics that are extremes, not means, over a rollout's minibatches.
_MAX_METRICS = ("ratio_max", "kl_max", "advantage_max", "grad_norm_max")
_MIN_METRICS = ("ratio_min", "advantage_min")
_SUM_METRICS = ("skipped_nonfinite",)


def aggregate_update_metrics(step_metrics) -> dict:
  """Per-minibatch metric dicts -> one rollout row: extremes for min/max metrics, sums for
  counts, means (over the finite values; a non-finite one makes the mean non-finite) otherwise."""
  out = {}
  for k in step_metrics[0]:
    vals = np.asarray([float(m[k]) for m in step_metrics])
    if k in _MAX_METRICS:
      out[k] = float(vals.max())
    elif k in _MIN_METRICS:
      out[k] = float(vals.min())
    elif k in _SUM_METRICS:
      out[k] = float(vals.sum())
    else:
      out[k] = float(vals.mean())
  return out


class NonFiniteGuard:
  """Counts skipped (non-finite) updates, saves each offending minibatch, stops after N in a row."""

  def __init__(self, directory: str, max_in_a_row: int, *, streak: int = 0, total: int = 0, enabled: bool = True):
    self.directory, self.max_in_a_row, self.enabled = directory, int(max_in_a_row), enabled
    self.streak, self.total = int(streak), int(total)

  def check(self, step: int, skipped: bool, minibatch: dict | None) -> None:
    """`minibatch` (numpy rows of the update) is needed only when `skipped`."""
    if not skipped:
      self.streak = 0
      return
    self.streak += 1
    self.total += 1
    path = os.path.join(self.directory, f"step_{step}.npz")
    if self.enabled:
      os.makedirs(self.directory, exist_ok=True)
      np.savez(path, **minibatch)
    log.warning("step %d: non-finite loss or gradient, update skipped (%d in a row); minibatch saved to %s",
                step, self.streak, path)
    if self.max_in_a_row and self.streak >= self.max_in_a_row:
      raise FloatingPointError(
          f"GRPO stopped at step {step}: {self.streak} non-finite updates in a row "
          f"(train.max_nonfinite_updates={self.max_in_a_row}); the minibatches are in {self.directory}")


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
  stop_ids = tok.sampling_stop_ids(bool(cfg.sampling.get("stop_at_answer_end")))
  with jax.set_mesh(mesh):
    model = common.init_policy(cfg, mesh, vocab_size=tok.vocab_size)
    full_graphdef = nnx.graphdef(model)
    graphdef, params, extra = split_model(model)
    tx = make_optimizer({**dict(cfg.optim), "learning_rate": gcfg.learning_rate})
    state = init_train_state(params, extra, tx, seed=int(cfg.seed))
    ref_params = copy_tree(params) if gcfg.beta > 0 else None
    it = iter(dataset_from_config(cfg.data, tok))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=int(cfg.train.keep_checkpoints))
    rollout = nonfinite_streak = nonfinite_total = 0
    if ckpt.latest_step() is not None:
      restored, meta = ckpt.restore({"state": state, "ref": ref_params}, data_iterator=it)
      state, ref_params, rollout = restored["state"], restored["ref"], int(meta["rollout"])
      nonfinite_streak, nonfinite_total = int(meta.get("nonfinite_streak", 0)), int(meta.get("nonfinite_total", 0))
      log.info("resumed from rollout %d (step %d)", rollout, int(state.step))
    sampler = Sampler(full_graphdef, model.cfg, mesh=mesh)
    update = jax.jit(make_update_step(graphdef, tx, gcfg, router_bias_rate=float(cfg.train.router_bias_rate),
                                      use_ref=ref_params is not None), donate_argnums=0)
    ref_lp = jax.jit(make_ref_logprobs_fn(graphdef, gcfg.logprob_chunk_size, gcfg.rollout_temperature))
    writer = MetricsWriter(workdir, enabled=jax.process_index() == 0)
    total = int(cfg.train.rollouts)
    bar = Progress(total, rollout, desc=cfg.get("stage", "grpo"), enabled=jax.process_index() == 0,
                   keys=("reward/mean", "accuracy/mean", "response_length/mean", "kl_mean", "step_time"))
    batch_sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp", "expert")))
    guard = NonFiniteGuard(os.path.join(workdir, "nonfinite"), int(cfg.train.get("max_nonfinite_updates", 3)),
                           streak=nonfinite_streak, total=nonfinite_total, enabled=jax.process_index() == 0)
    step = int(state.step)  # a host copy: no device sync between the minibatch updates of a rollout
    row = {}
    policy = lambda: nnx.state(merge(graphdef, state.params, state.extra))  # the current arrays, no copy
    evaluate_every = int(cfg.train.get("eval_every", 0))
    heldout = heldout_evaluator(cfg, sampler, tok, reward_fn, stop_ids) if evaluate_every else None
    if evaluate_every and rollout == 0 and step == 0:
      # The initialisation's held-out score: the curve starts where RL starts (the pure eval
      # consumes no training randomness, so the run is unchanged).
      writer.write(0, {"rollout": 0, **heldout(policy(), 0)})
    while rollout < total:
      t0 = time.perf_counter()
      policy_state = policy()
      sp = SamplingParams(temperature=gcfg.rollout_temperature, top_p=float(cfg.sampling.top_p),
                          top_k=int(cfg.sampling.top_k), max_new_tokens=int(gcfg.max_completion_length),
                          stop_token_ids=stop_ids, seed=(int(cfg.seed) * 1_000_003 + rollout) % 2**32,
                          n=gcfg.num_generations)
      draws, seconds = [0], {"generate": 0.0, "reward": 0.0}

      def draw():
        batch = next(it)
        t = time.perf_counter()
        # Each extra draw of a dynamic-sampling rollout gets its own seed (same for a resumed run).
        gen = sampler.generate(policy_state, batch["prompt_tokens"],
                               dataclasses.replace(sp, seed=(sp.seed + 7919 * draws[0]) % 2**32))
        draws[0] += 1
        seconds["generate"] += time.perf_counter() - t
        t = time.perf_counter()
        # Ids past the tokenizer (padded embedding tables) have no text; they cannot be correct.
        texts = [tok.decode([i for i in c if i < tok.vocab_size]) for c in gen.completions()]
        g = np.asarray(gen.prompt_index)
        out = reward_fn(texts, [batch["answers"][i] for i in g], [batch["metadata"][i] for i in g])
        seconds["reward"] += time.perf_counter() - t
        return Rollout(prompts=list(batch["prompt_tokens"]), answers=list(batch["answers"]),
                       metadata=list(batch["metadata"]), gen=gen, texts=texts,
                       rewards=np.asarray(out.total, np.float32), components=dict(out.components),
                       reward_metrics=dict(out.metrics))

      roll, dyn_stats = fill_rollout(draw, prompts_per_rollout, dynamic=gcfg.dynamic_sampling,
                                     max_draws=gcfg.dynamic_sampling_max_draws)
      t_gen = time.perf_counter()
      ref_fn = None
      if ref_params is not None:
        ref_fn = lambda b: ref_lp(ref_params, state.extra, {k: jax.device_put(b[k], batch_sh) for k in
                                                            ("tokens", "targets", "positions", "segment_ids")})
      scored = score_rollout(roll, gcfg, ref_logprobs_fn=ref_fn, length_multiple=int(cfg.train.length_multiple))
      t_score = time.perf_counter()
      updates = []  # (step number of the update, row indices, device metrics)
      for _epoch in range(gcfg.num_epochs):
        # Group order per (seed, rollout, epoch): a resumed run shuffles exactly as an uninterrupted one.
        rng = np.random.default_rng([int(cfg.seed), rollout, _epoch])
        for idx in minibatch_slices(roll.num_groups, gcfg.num_generations, gcfg.num_minibatches, rng):
          mb = {k: jax.device_put(np.asarray(v)[idx], batch_sh) for k, v in scored.batch.items()}
          state, m = update(state, mb)
          step += 1
          updates.append((step, idx, m))
          if ref_params is not None and gcfg.ref_update_interval and step % gcfg.ref_update_interval == 0:
            ref_params = copy_tree(state.params)  # reference <- current policy (paper: every 400 steps)
      step_metrics = jax.device_get([m for _, _, m in updates])  # one pull per rollout
      for (s, idx, _), m in zip(updates, step_metrics):
        skipped = bool(m["skipped_nonfinite"])  # the offending minibatch is gathered only then
        guard.check(s, skipped, {k: np.asarray(v)[idx] for k, v in scored.batch.items()} if skipped else None)
      t_upd = time.perf_counter()
      rollout += 1
      n_tok = float(np.sum(roll.gen.lengths))
      row = {**scored.metrics, **dyn_stats, **aggregate_update_metrics(step_metrics), **reflection_metrics(roll.texts),
             "nonfinite/skipped_total": float(guard.total),
             "time/generate": seconds["generate"], "time/reward": seconds["reward"], "time/ref": t_score - t_gen,
             "time/update": t_upd - t_score, "step_time": t_upd - t0,
             "tokens_per_s_per_device": n_tok / max(seconds["generate"], 1e-9) / jax.device_count(),
             "rollout": rollout, "sampler/compiles": sampler.stats.total_compiles}
      if evaluate_every and (rollout % evaluate_every == 0 or rollout == total):
        row.update(heldout(policy(), rollout))
      row = writer.write(step, row)
      bar.update(row)
      ckpt.end_of_step(rollout, {"state": state, "ref": ref_params}, every=int(cfg.train.checkpoint_every),
                       last=total, data_iterator=it, meta={"rollout": rollout, "stage": cfg.get("stage", "grpo"),
                                                           "nonfinite_streak": guard.streak,
                                                           "nonfinite_total": guard.total})
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


def heldout_evaluator(cfg, sampler, tok, reward_fn, stop_ids):
  """`fn(params, rollout) -> metrics`: held-out pass@1 (± SE), cons@k, format and length on
  `cfg.eval.task`'s test split; problems and template are built once per stage."""
  from r1jax.data import tasks
  from r1jax.data.templates import build_template
  from r1jax.eval.evaluate import evaluate_policy, trained_format

  e = cfg.eval
  template = build_template(cfg.data.template)
  records = tasks.get_task(e.task).generate("test", int(e.n), seed=int(e.seed), difficulty=int(e.difficulty))

  def grade(texts, answers, metadata):
    return reward_fn(texts, answers, metadata).components["accuracy"]

  def evaluate(params, rollout: int) -> dict:
    res = evaluate_policy(sampler, params, tok, template, records, benchmark=e.task, label=f"rollout {rollout}",
                          grade=grade, k=int(e.k), temperature=float(e.temperature), top_p=float(e.top_p),
                          max_new_tokens=int(e.max_new_tokens), stop_token_ids=stop_ids, seed=int(e.seed),
                          format_fn=trained_format(template))
    return {"eval/pass@1": res.pass_at_1, "eval/pass@1_se": res.pass_at_1_stderr,
            "eval/cons@k": res.cons_at_k or 0.0, "eval/format": res.format_rate, "eval/mean_length": res.mean_length}

  return evaluate
