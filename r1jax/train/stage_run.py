"""The frame every training stage (SFT, GRPO, reward model) runs its loop in.

    with StageRun(cfg, workdir, default_name="sft") as run:      # workdir, SIGTERM handler, mesh
      state, meta = run.restore({"state": state}, data_iterator=it)  # (a resumed run's, or as given)
      run.progress(total, start, keys=("train/loss",))
      while step < total:
        ...
        run.log(step, row)                                          # JSONL + TensorBoard + the bar
        run.save(step, {"state": state}, last=total, data_iterator=it)
      run.export(model)                                             # <workdir>/final
    # on leaving: bar, checkpointer (waits for async saves) and metric writers closed

Only process 0 writes metrics and exports; every process takes part in checkpoints. The sampling
stages use the same frame without a checkpointer (`checkpoints=False`): rejection sampling resumes
by its finished shards, evaluation by its finished table.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import jax

from r1jax import fs
from r1jax.train import common
from r1jax.train.checkpoint import Checkpointer, install_preemption_handler
from r1jax.train.metrics import MetricsWriter, Progress

log = logging.getLogger(__name__)


class StageRun:
  """Workdir, preemption handler, mesh, tokenizer, checkpointer, metrics, progress and export."""

  def __init__(self, cfg, workdir: str, *, default_name: str, tokenizer: bool = True, checkpoints: bool = True,
               tensorboard: bool = True, shared_data: bool = False):
    workdir = fs.name(workdir)  # local: absolute; gs://…: as given
    fs.makedirs(workdir)
    install_preemption_handler()
    self.cfg, self.workdir = cfg, workdir
    self.name = cfg.get("stage", default_name)
    self.is_main = jax.process_index() == 0
    self.mesh = common.build_mesh(cfg)
    self.tokenizer = common.load_tokenizer(cfg, workdir) if tokenizer else None
    # shared_data: every process iterates the same data (GRPO prompts), so one iterator state is
    # saved, by process 0, and restores on any process count.
    self.ckpt = Checkpointer(fs.join(workdir, "checkpoints"), max_to_keep=int(cfg.train.keep_checkpoints),
                             shared_data=shared_data) if checkpoints else None
    self.writer = MetricsWriter(workdir, enabled=self.is_main, tensorboard=tensorboard)
    self.bar: Optional[Progress] = None
    self._mesh_context = None

  def __enter__(self) -> "StageRun":
    self._mesh_context = jax.set_mesh(self.mesh)
    self._mesh_context.__enter__()
    return self

  def __exit__(self, *exc) -> None:
    try:
      if self.bar is not None:
        self.bar.close()
      if self.ckpt is not None:
        self.ckpt.close()
      self.writer.close()
    finally:
      self._mesh_context.__exit__(*exc)

  def restore(self, items: Mapping[str, Any], data_iterator=None) -> tuple[dict, dict]:
    """(the latest checkpoint's items and meta) — or (`items`, {}) when there is none yet."""
    if self.ckpt.latest_step() is None:
      return dict(items), {}
    restored, meta = self.ckpt.restore(dict(items), data_iterator=data_iterator)
    log.info("%s: resumed from checkpoint step %d", self.name, self.ckpt.latest_step())
    return restored, dict(meta or {})

  def progress(self, total: int, start: int, keys=()) -> None:
    enabled = self.is_main and self.cfg.train.get("progress", True)
    self.bar = Progress(total, start, desc=self.name, keys=keys, enabled=enabled)

  def log(self, step: int, row: Mapping[str, Any]) -> dict:
    """Writes `row` (if any) at `step`, advances the bar; returns the row as written."""
    written = self.writer.write(step, row) if row else {}
    if self.bar is not None:
      self.bar.update(written)
    return written

  def save(self, step: int, items: Mapping[str, Any], *, last: int, data_iterator=None,
           meta: Optional[Mapping[str, Any]] = None, every: Optional[int] = None) -> None:
    """Saves every `train.checkpoint_every` steps, at `last` and on preemption (then exits)."""
    every = int(self.cfg.train.checkpoint_every) if every is None else every
    self.ckpt.end_of_step(step, dict(items), every=every, last=last, data_iterator=data_iterator,
                          meta={"stage": self.name, **dict(meta or {})})

  def export(self, model) -> str:
    """<workdir>/final: the HF-format model, the tokenizer and the stage metadata."""
    return common.export_final(model, common.tokenizer_source(self.cfg), self.workdir,
                               meta=common.stage_meta(self.cfg))
