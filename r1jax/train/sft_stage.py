"""The SFT stage loop (cold start, rejection-sampling SFT, distillation): packed batches,
response-only loss, AdamW + warmup/cosine, clipping, accumulation, exact resume."""
from __future__ import annotations

import logging
import os
import time

import jax
import numpy as np

from r1jax.train import common
from r1jax.train.checkpoint import Checkpointer, install_preemption_handler
from r1jax.train.metrics import MetricsWriter, Progress
from r1jax.train.sft import SFT_KEYS, make_sft_step
from r1jax.train.state import init_train_state, make_optimizer, merge, split_model

log = logging.getLogger(__name__)


def run_sft(cfg, workdir: str) -> dict:
  from r1jax.data.config import dataset_from_config
  from r1jax.data.global_batch import to_global

  os.makedirs(workdir, exist_ok=True)
  install_preemption_handler()
  common.resolve_offline_corpus(cfg.data, workdir)
  mesh = common.build_mesh(cfg)
  tok = common.load_tokenizer(cfg, workdir)
  with jax.set_mesh(mesh):
    model = common.init_policy(cfg, mesh, vocab_size=tok.vocab_size)
    graphdef, params, extra = split_model(model)
    tx = make_optimizer({**dict(cfg.optim), "total_steps": int(cfg.train.steps)})
    state = init_train_state(params, extra, tx, seed=int(cfg.seed))
    it = iter(dataset_from_config(cfg.data, tok))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=int(cfg.train.keep_checkpoints))
    if ckpt.latest_step() is not None:
      restored, _ = ckpt.restore({"state": state}, data_iterator=it)
      state = restored["state"]
      log.info("resumed at step %d", int(state.step))
    step_fn = jax.jit(make_sft_step(graphdef, tx, grad_accum_steps=int(cfg.train.grad_accum_steps),
                                    router_bias_rate=float(cfg.train.router_bias_rate),
                                    chunk_size=int(cfg.train.logprob_chunk_size)), donate_argnums=0)
    writer = MetricsWriter(workdir, enabled=jax.process_index() == 0)
    total, step = int(cfg.train.steps), int(state.step)
    bar = Progress(total, step, desc=cfg.get("stage", "sft"), keys=("loss", "grad_norm"),
                   enabled=jax.process_index() == 0 and cfg.train.get("progress", True))
    row = {}
    while step < total:
      t0 = time.perf_counter()
      batch = to_global({k: np.asarray(v) for k, v in next(it).items() if k in SFT_KEYS}, mesh)
      state, m = step_fn(state, batch)
      step += 1
      if step % int(cfg.train.log_every) == 0 or step == total:
        row = writer.write(step, {**{k: float(v) for k, v in m.items()}, "step_time": time.perf_counter() - t0})
      bar.update(row)
      ckpt.end_of_step(step, {"state": state}, every=int(cfg.train.checkpoint_every), last=total,
                       data_iterator=it, meta={"stage": cfg.get("stage", "sft")})
    bar.close()
    ckpt.close()
    writer.close()
    common.export_final(merge(graphdef, state.params, state.extra), common.tokenizer_source(cfg), workdir,
                        meta=common.stage_meta(cfg))
  return row
