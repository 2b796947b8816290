"""The GRPO stage loop (R1-Zero, reasoning RL, all-scenario RL): prompts -> sampler on the same
weights (G per prompt) -> rewards -> group advantages -> minibatch updates, with a reference
policy reset every N steps, checkpoints that resume exactly, metrics, evaluation and plots.

One "step" is one optimizer update on one minibatch of whole groups; one rollout feeds
`num_minibatches * num_epochs` steps (the paper: 8,192 outputs in 16 minibatches, one pass).
The row logged per rollout follows `train.grpo_metrics` (reward/, rollout/, train/, time/, eval/).
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r1jax import fs
from r1jax.eval.metrics import reflection_metrics
from r1jax.parallel.multihost import host_get
from r1jax.parallel.sharding import BATCH_AXES
from r1jax.rewards.combine import CombinedReward
from r1jax.rl.config import GRPOConfig
from r1jax.sampling import Sampler, SamplingParams
from r1jax.train import common
from r1jax.train import grpo_metrics as gm
from r1jax.train.config_check import (ConfigError, check_reward_name, check_task_names, check_training, need_positive,
                                     need_sections)
from r1jax.train.grpo import make_ref_logprobs_fn, make_update_step, minibatch_slices, score_rollout
from r1jax.train.rollout import Rollout, fill_rollout
from r1jax.train.sharded_reward import ShardedReward
from r1jax.train.stage_run import StageRun
from r1jax.train.state import init_train_state, make_optimizer, merge, split_model

# One jitted copy for every reference reset (a fresh jit per call would recompile each time).
copy_tree = jax.jit(lambda t: jax.tree.map(jnp.copy, t))


def check_grpo_config(cfg) -> GRPOConfig:
  """Start-of-run checks of a GRPO stage (each error names its key); returns its GRPOConfig, built
  here once from `cfg.grpo` and handed to `run_rl`."""
  check_training(cfg, data_kind="rl", what="a grpo stage", train_keys=("rollouts", "checkpoint_every"))
  need_sections(cfg, ("grpo", "rewards", "sampling", "eval"))
  need_positive(cfg.sampling, ("num_slots",), "sampling", allow_zero=True)
  try:
    gcfg = GRPOConfig(**dict(cfg.grpo))
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config.grpo: {e}") from e
  prompts = gcfg.prompts_per_rollout
  if cfg.data.batch_size != prompts:
    raise ConfigError(f"config.data.batch_size={cfg.data.batch_size} must equal grpo.prompts_per_step * "
                      f"grpo.num_minibatches = {prompts} (prompts per rollout; leave it unset to follow them)")
  for name in cfg.rewards.weights:
    check_reward_name(name, f"rewards.weights.{name}")
  _check_reward_options(cfg.rewards)
  _check_learned_rewards(cfg.rewards)
  check_task_names(cfg.eval.task, "eval.task")  # the held-out evaluation's task
  return gcfg


def run_rl(cfg, workdir: str, gcfg: GRPOConfig) -> dict:
  """Runs (or resumes) one GRPO stage in `workdir`; returns the last rollout's metrics row."""
  from r1jax.data.config import dataset_from_config

  # With several processes each grades a slice of the rows (rule rewards) and the scores are gathered.
  reward_fn = ShardedReward(CombinedReward(dict(cfg.rewards.weights), options=dict(cfg.rewards.get("options", {}) or {})))
  try:
    with StageRun(cfg, workdir, default_name="grpo", shared_data=True) as run:
      tok, mesh = run.tokenizer, run.mesh
      stop_ids = tok.sampling_stop_ids(bool(cfg.sampling.get("stop_at_answer_end")))
      model = common.init_policy(cfg, mesh, vocab_size=tok.vocab_size)
      sampler = Sampler(nnx.graphdef(model), model.cfg, mesh=mesh)
      graphdef, params, extra = split_model(model)
      tx = make_optimizer(dict(cfg.optim))
      use_ref = gcfg.uses_reference
      # Every process reads the whole global prompt batch, in the same order: host rollouts are
      # then identical everywhere (group ids global, no gather of Python objects), the sampler and
      # the update take the same host inputs on every process, and the data position is one state,
      # whatever the process count (a run resumes on another number of hosts).
      it = iter(dataset_from_config(cfg.data, tok, process_index=0, process_count=1))
      restored, meta = run.restore({"state": init_train_state(params, extra, tx, seed=int(cfg.seed)),
                                    "ref": copy_tree(params) if use_ref else None}, data_iterator=it)
      state, ref_params, rollout = restored["state"], restored["ref"], int(meta.get("rollout", 0))
      update = jax.jit(make_update_step(graphdef, tx, gcfg, router_bias_rate=float(cfg.train.router_bias_rate),
                                        use_ref=use_ref), donate_argnums=0)
      ref_lp = jax.jit(make_ref_logprobs_fn(graphdef, gcfg.logprob_chunk_size, gcfg.rollout_temperature,
                                            micro_batch_size=gcfg.micro_batch_size))
      batch_sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(BATCH_AXES))
      guard = gm.NonFiniteGuard(fs.join(workdir, "nonfinite"), int(cfg.train.max_nonfinite_updates),
                                streak=int(meta.get("nonfinite_streak", 0)), total=int(meta.get("nonfinite_total", 0)),
                                enabled=run.is_main)
      step = int(state.step)  # a host copy: no device sync between the minibatch updates of a rollout
      policy = lambda: nnx.state(merge(graphdef, state.params, state.extra))  # the current arrays, no copy
      total, evaluate_every = int(cfg.train.rollouts), int(cfg.train.eval_every)
      heldout = heldout_evaluator(cfg, sampler, tok, reward_fn, stop_ids) if evaluate_every else None
      run.progress(total, rollout, keys=gm.PROGRESS_KEYS)
      if heldout and rollout == 0 and step == 0:
        # The initialisation's held-out score: the curve starts where RL starts (the pure eval
        # consumes no training randomness, so the run is unchanged).
        run.writer.write(0, {"rollout": 0, **heldout(policy(), 0)})
      row = {}
      while rollout < total:
        # 1. Rollout: sample G completions per prompt on the current weights and grade them.
        t0 = time.perf_counter()
        seconds = {"generate": 0.0, "reward": 0.0}
        draw = _drawer(cfg, gcfg, it, sampler, policy(), tok, reward_fn, stop_ids, rollout, seconds)
        roll, dyn_stats = fill_rollout(draw, gcfg.prompts_per_rollout,
                                       dynamic=gcfg.dynamic_sampling, max_draws=gcfg.dynamic_sampling_max_draws)
        # 2. Score: reference log-probs, group advantages, the training arrays.
        t_gen = time.perf_counter()
        ref_fn = None if ref_params is None else lambda b: host_get(ref_lp(ref_params, state.extra, {
            k: jax.device_put(b[k], batch_sh) for k in ("tokens", "targets", "positions", "segment_ids")}))
        scored = score_rollout(roll, gcfg, ref_logprobs_fn=ref_fn, length_multiple=int(cfg.train.length_multiple))
        # 3. Update: whole-group minibatches, num_epochs passes; metrics pulled once per rollout.
        t_score = time.perf_counter()
        updates = []  # (step number of the update, row indices, device metrics)
        for epoch in range(gcfg.num_epochs):
          # Group order per (seed, rollout, epoch): a resumed run shuffles exactly as an uninterrupted one.
          rng = np.random.default_rng([int(cfg.seed), rollout, epoch])
          for idx in minibatch_slices(roll.num_groups, gcfg.num_generations, gcfg.num_minibatches, rng):
            state, m = update(state, {k: jax.device_put(np.asarray(v)[idx], batch_sh) for k, v in scored.batch.items()})
            step += 1
            updates.append((step, idx, m))
            if ref_params is not None and gcfg.ref_update_interval and step % gcfg.ref_update_interval == 0:
              ref_params = copy_tree(state.params)  # reference <- current policy (paper: every 400 steps)
        step_metrics = jax.device_get([m for _, _, m in updates])
        for (s, idx, _), m in zip(updates, step_metrics):
          skipped = bool(m["skipped_nonfinite"])  # the offending minibatch is gathered only then
          guard.check(s, skipped, {k: np.asarray(v)[idx] for k, v in scored.batch.items()} if skipped else None)
        t_upd = time.perf_counter()
        rollout += 1
        row = {"rollout": rollout, **gm.reward_metrics(roll.reward_metrics), **scored.metrics,
               **gm.namespaced("rollout", {**dyn_stats, **reflection_metrics(roll.texts)}),
               "rollout/tokens_per_s_per_device": float(np.sum(roll.gen.lengths)) / max(seconds["generate"], 1e-9)
                                                  / jax.device_count(),
               "rollout/sampler_compiles": sampler.stats.total_compiles,
               **gm.train_metrics(step_metrics), "train/nonfinite_total": float(guard.total),
               "time/generate": seconds["generate"], "time/reward": seconds["reward"], "time/ref": t_score - t_gen,
               "time/update": t_upd - t_score, "time/step": t_upd - t0}
        if heldout and (rollout % evaluate_every == 0 or rollout == total):
          row.update(heldout(policy(), rollout))
        row = run.log(step, row)
        run.save(rollout, {"state": state, "ref": ref_params}, last=total, data_iterator=it,
                 meta={"rollout": rollout, "nonfinite_streak": guard.streak, "nonfinite_total": guard.total})
      run.export(merge(graphdef, state.params, state.extra))
  finally:
    reward_fn.close()  # its grading processes, also when the run fails
  if jax.process_index() == 0 and cfg.train.plots:
    from r1jax.eval.plots import plot_jsonl

    plot_jsonl(run.writer.path, fs.join(workdir, "plots"))
  return row


def _drawer(cfg, gcfg: GRPOConfig, it, sampler, policy_state, tok, reward_fn, stop_ids, rollout: int, seconds):
  """`draw() -> Rollout`: the next prompt batch, G samples each, graded (times added to `seconds`)."""
  sp = SamplingParams(temperature=gcfg.rollout_temperature, top_p=float(cfg.sampling.top_p),
                      top_k=int(cfg.sampling.top_k), max_new_tokens=int(gcfg.max_completion_length),
                      stop_token_ids=stop_ids, seed=(int(cfg.seed) * 1_000_003 + rollout) % 2**32,
                      n=gcfg.num_generations)
  draws = [0]

  def draw() -> Rollout:
    batch = next(it)
    t = time.perf_counter()
    # Each extra draw of a dynamic-sampling rollout gets its own seed (same for a resumed run).
    gen = sampler.generate(policy_state, batch["prompt_tokens"],
                           dataclasses.replace(sp, seed=(sp.seed + 7919 * draws[0]) % 2**32),
                           num_slots=int(cfg.sampling.num_slots) or None, refill=bool(cfg.sampling.refill))
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

  return draw


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


def _check_reward_options(rewards) -> None:
  """rewards.options names only weighted rewards; the accuracy reward's routes and per-verifier
  options name registered rewards."""
  options = rewards.get("options", {}) or {}
  for name in options:
    if name not in rewards.weights:
      raise ConfigError(f"config.rewards.options.{name}: options for a reward with no weight; "
                        f"rewards.weights names {sorted(rewards.weights)}")
  accuracy = options.get("accuracy", None) or {}
  for task, target in dict(accuracy.get("routes", None) or {}).items():
    check_reward_name(target, f"rewards.options.accuracy.routes.{task}")
  for name in dict(accuracy.get("options", None) or {}):
    check_reward_name(name, f"rewards.options.accuracy.options.{name}")


def _check_learned_rewards(rewards) -> None:
  """A learned reward (helpfulness_rm, safety_rm) needs options.<name>.path: a reward model dir."""
  from r1jax.rewards.model import META_FILE, RM_KINDS

  options = rewards.get("options", {}) or {}
  for name in rewards.weights:
    if name not in {f"{k}_rm" for k in RM_KINDS}:
      continue
    path = (options.get(name, None) or {}).get("path", "")
    if not path:
      raise ConfigError(f"config.rewards.options.{name}.path: set it to a reward model directory "
                        "(a reward_model stage's <workdir>/final)")
    if not fs.exists(fs.join(path, META_FILE)):
      raise ConfigError(f"config.rewards.options.{name}.path: {path!r} has no {META_FILE} (not a reward model dir)")
