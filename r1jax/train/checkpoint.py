"""Checkpoints that survive preemption: orbax CheckpointManager in the workdir.

One checkpoint holds the train-state pytree (params, optimizer state, MoE router bias, reference
params, step, rng — whatever the stage puts in it), the Grain iterator state, and a JSON metadata
dict (stage marker, config). Saves are async and keep the newest N. SIGTERM (TPU preemption) sets
a flag the loops poll (several processes: JAX's preemption sync point, one step for all); they
save and exit cleanly. Restores go onto the current shardings.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Optional

import jax
import numpy as np

from r1jax import fs

log = logging.getLogger(__name__)

_PREEMPTED = threading.Event()


def _on_sigterm(signum, frame):
  log.warning("SIGTERM received: will save a checkpoint and exit at the end of this step")
  _PREEMPTED.set()


def install_preemption_handler() -> None:
  """Single process only. With several processes JAX's preemption service (jax.distributed) owns
  SIGTERM and makes every process stop at the same step; a Python handler would replace its C++
  one, and the signalled process alone would stop (and the others hang in their collectives)."""
  if jax.process_count() > 1:
    return
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _on_sigterm)


def preempted() -> bool:
  return _PREEMPTED.is_set()


def fault_injection(step: int) -> None:
  """Test seam: with R1JAX_KILL_AFTER_STEP=n the process SIGKILLs itself right after step n (an
  async checkpoint may still be in flight), so resume is tested against a real kill -9 at a
  deterministic point."""
  target = os.environ.get("R1JAX_KILL_AFTER_STEP")
  if target is not None and int(target) == step:
    os.kill(os.getpid(), signal.SIGKILL)


def flatten(tree) -> dict[str, Any]:
  """Nested pytree (nnx.State, dicts, lists) -> {'a.b.0.c': leaf}; orbax wants string keys."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in p) or "_": v
          for p, v in leaves}


def unflatten_like(flat: dict[str, Any], like):
  leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
  keys = [".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in p) or "_"
          for p, _ in leaves]
  missing = [k for k in keys if k not in flat]
  if missing:
    raise KeyError(f"checkpoint lacks {len(missing)} entries, e.g. {missing[:3]}")
  return jax.tree_util.tree_unflatten(treedef, [flat[k] for k in keys])


def _abstract(tree):
  def one(x):
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return np.asarray(x)
  return jax.tree.map(one, tree)


class Checkpointer:
  def __init__(self, directory: str, *, max_to_keep: int = 3, save_interval_steps: int = 1,
               async_save: bool = True, shared_data: bool = False):
    """`shared_data`: the data iterator is the same on every process; its state is saved once
    (JSON, process 0) instead of per process, so a checkpoint restores on any process count."""
    import orbax.checkpoint as ocp
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax INFO logging is very chatty
    # That also raises the root logger's level; r1jax's own INFO lines ("resumed at step N") stay.
    r1jax_logger = logging.getLogger("r1jax")
    if r1jax_logger.level == logging.NOTSET:
      r1jax_logger.setLevel(logging.INFO)
    # A local path made absolute (orbax needs it); gs://… passed through untouched.
    self.directory = fs.name(directory)
    self._ocp = ocp
    self.shared_data = shared_data
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
                                             enable_async_checkpointing=async_save, create=True))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state, *, data_iterator=None, meta: Optional[dict] = None, force: bool = False) -> bool:
    ocp = self._ocp
    items = {"state": ocp.args.StandardSave(flatten(state)), "meta": ocp.args.JsonSave(dict(meta or {}))}
    if data_iterator is not None and self.shared_data:
      items["data_state"] = ocp.args.JsonSave(data_iterator.get_state())
    elif data_iterator is not None:
      import grain

      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, state_like, *, step: Optional[int] = None, data_iterator=None):
    """Returns (state, meta) restored onto `state_like`'s shardings; sets the iterator's state."""
    ocp = self._ocp
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{self.directory}: no checkpoint to restore")
    items = {"state": ocp.args.StandardRestore(_abstract(flatten(state_like))), "meta": ocp.args.JsonRestore()}
    if data_iterator is not None and self.shared_data:
      items["data_state"] = ocp.args.JsonRestore()
    elif data_iterator is not None:
      import grain

      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    out = self.manager.restore(step, args=ocp.args.Composite(**items))
    if data_iterator is not None and self.shared_data:
      data_iterator.set_state(out["data_state"])
    return unflatten_like(dict(out["state"]), state_like), dict(out["meta"] or {})

  def meta(self, step: Optional[int] = None) -> dict:
    step = self.latest_step() if step is None else step
    if step is None:
      return {}
    out = self.manager.restore(step, args=self._ocp.args.Composite(meta=self._ocp.args.JsonRestore()))
    return dict(out["meta"] or {})

  def reached_preemption(self, step: int) -> bool:
    """Single process: this process got SIGTERM. Multi-process: JAX's preemption sync point says
    so, which is the same step on every process (a local flag could differ by a step)."""
    if jax.process_count() == 1:
      return preempted()
    try:
      return bool(self.manager.reached_preemption(step))
    except Exception:  # jax.distributed without its preemption service
      return False

  def end_of_step(self, step: int, state, *, every: int, last: int, data_iterator=None,
                  meta: Optional[dict] = None) -> None:
    """The loops' shared epilogue: save every `every` steps and at `last`; on preemption save,
    wait for the commit and exit cleanly; then the fault-injection seam."""
    preempt = self.reached_preemption(step)
    if step % every == 0 or step == last or preempt:
      self.save(step, state, data_iterator=data_iterator, meta=meta, force=True)
    if preempt:
      self.wait()
      log.warning("preempted: checkpoint saved at step %d; exiting", step)
      raise SystemExit(0)
    fault_injection(step)

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
