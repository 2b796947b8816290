"""The SFT stage loop (cold start, rejection-sampling SFT, distillation): packed batches,
response-only loss, AdamW + warmup/cosine, clipping, accumulation, exact resume."""
from __future__ import annotations

import time

import jax
import numpy as np

from r1jax.parallel.multihost import host_get
from r1jax.train import common
from r1jax.train.config_check import ConfigError, check_training
from r1jax.train.sft import SFT_KEYS, make_sft_step
from r1jax.train.stage_run import StageRun
from r1jax.train.state import init_train_state, make_optimizer, merge, split_model


def check_sft_config(cfg) -> None:
  check_training(cfg, data_kind="sft", what="an sft stage",
                 train_keys=("steps", "grad_accum_steps", "log_every", "checkpoint_every"))
  if cfg.data.batch_size % int(cfg.train.grad_accum_steps):
    raise ConfigError(f"config.data.batch_size={cfg.data.batch_size} is not divisible by "
                      f"train.grad_accum_steps={cfg.train.grad_accum_steps}")


class LateMetrics:
  """Holds a step's device metrics until the next step is dispatched, then pulls them: the host
  never waits for the step it just launched (one step late, as nanodo logs)."""

  def __init__(self, run: StageRun):
    self.run, self.pending = run, None

  def hold(self, step: int, metrics, started: float) -> None:
    self.flush()
    self.pending = (step, metrics, started)

  def flush(self) -> dict:
    if self.pending is None:
      return {}
    step, metrics, started = self.pending
    self.pending = None
    row = {f"train/{k}": float(v) for k, v in host_get(metrics).items()}
    # step + the next one's dispatch: per-step time over a log interval is time/step's mean.
    return self.run.log(step, {**row, "time/step": time.perf_counter() - started})


def run_sft(cfg, workdir: str, checked=None) -> dict:
  from r1jax.data.config import dataset_from_config
  from r1jax.data.global_batch import to_global

  common.resolve_offline_corpus(cfg.data, workdir)
  with StageRun(cfg, workdir, default_name="sft") as run:
    model = common.init_policy(cfg, run.mesh, vocab_size=run.tokenizer.vocab_size)
    graphdef, params, extra = split_model(model)
    total = int(cfg.train.steps)
    tx = make_optimizer({**dict(cfg.optim), "total_steps": total})
    it = iter(dataset_from_config(cfg.data, run.tokenizer))
    restored, _ = run.restore({"state": init_train_state(params, extra, tx, seed=int(cfg.seed))}, data_iterator=it)
    state = restored["state"]
    step_fn = jax.jit(make_sft_step(graphdef, tx, grad_accum_steps=int(cfg.train.grad_accum_steps),
                                    router_bias_rate=float(cfg.train.router_bias_rate),
                                    chunk_size=int(cfg.train.logprob_chunk_size)), donate_argnums=0)
    step = int(state.step)
    run.progress(total, step, keys=("train/loss", "train/grad_norm"))
    late, row = LateMetrics(run), {}
    try:
      while step < total:
        t0 = time.perf_counter()
        batch = to_global({k: np.asarray(v) for k, v in next(it).items() if k in SFT_KEYS}, run.mesh)
        state, m = step_fn(state, batch)
        step += 1
        row = late.flush() or row  # the previous step's metrics, now that this step is queued
        if step % int(cfg.train.log_every) == 0 or step == total:
          late.hold(step, m, t0)
        else:
          run.log(step, {})  # advances the bar
        run.save(step, {"state": state}, last=total, data_iterator=it)
    except SystemExit:  # preempted after a checkpoint: the held row still reaches the log
      late.flush()
      raise
    row = late.flush() or row
    run.export(merge(graphdef, state.params, state.extra))
  return row
