"""Reward model training (paper §2.3.4): pairwise Bradley–Terry for helpfulness, pointwise for safety.

Losses (pure functions, fp32):
  pairwise   mean(-log σ(s_chosen - s_rejected)), accuracy = mean(s_chosen > s_rejected)
  pointwise  binary cross-entropy with logits, label 1 = safe:
             mean(softplus(s) - y·s), accuracy = mean((s > 0) == (y == 1))

The steps take the batches of `data.pipelines.preference_dataset` (PAIR_KEYS) and
`pointwise_dataset` (POINT_KEYS) — pass only those numeric keys into the jitted step — and keep
parameters as arguments, as `train/sft.py` does. Chosen and rejected rows go through the model
as one [2B, L] batch. Only the reward model's trainable Params (`split_reward_model`: everything
but the unused LM head) get optimizer state; the MoE router correction bias, if any, stays fixed.

Records are filtered through `rewards.model.select_text` before tokenising, so the helpfulness RM
trains on summaries and the safety RM on whole responses, exactly what it scores at reward time.
`training_steps` is the one training loop: the reward-model stage (checkpoints, metrics, global
batches) and `train_reward_model` (in memory, for notebooks and tests) both drive it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from r1jax.data import encode
from r1jax.data.pipelines import pointwise_dataset, preference_dataset
from r1jax.data.templates import PromptTemplate
from r1jax.data.tokenizer import Tokenizer
from r1jax.models.reward_head import RewardModel, make_score_fn, split_reward_model
from r1jax.rewards.model import DEFAULT_TEMPLATE, RM_KINDS, select_text
from r1jax.train.state import TrainState, apply_gradients, init_train_state, make_optimizer, merge

log = logging.getLogger(__name__)

PAIR_KEYS = ("chosen_tokens", "chosen_lengths", "rejected_tokens", "rejected_lengths")
POINT_KEYS = ("tokens", "lengths", "labels")


# ------------------------------------------------------------------ losses


def pairwise_loss(chosen_scores: jax.Array, rejected_scores: jax.Array,
                  mask: Optional[jax.Array] = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Bradley–Terry: mean over pairs of -log σ(chosen - rejected); mask [B] drops padded pairs."""
  margin = chosen_scores.astype(jnp.float32) - rejected_scores.astype(jnp.float32)  # [B]
  w = jnp.ones_like(margin) if mask is None else mask.astype(jnp.float32)
  n = jnp.maximum(w.sum(), 1.0)
  loss = (-jax.nn.log_sigmoid(margin) * w).sum() / n
  return loss, {"accuracy": ((margin > 0) * w).sum() / n, "margin": (margin * w).sum() / n}


def pointwise_loss(scores: jax.Array, labels: jax.Array,
                   mask: Optional[jax.Array] = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Binary cross-entropy with logits (label 1 = safe); mask [B] drops padded rows."""
  s = scores.astype(jnp.float32)  # [B]
  y = labels.astype(jnp.float32)
  w = jnp.ones_like(s) if mask is None else mask.astype(jnp.float32)
  n = jnp.maximum(w.sum(), 1.0)
  loss = ((jax.nn.softplus(s) - y * s) * w).sum() / n
  correct = (s > 0) == (y > 0.5)
  return loss, {"accuracy": (correct * w).sum() / n, "mean_score": (s * w).sum() / n}


# ------------------------------------------------------------------ forward passes


def pairwise_scores(graphdef, params, extra, batch: Mapping[str, jax.Array]):
  """(chosen [B], rejected [B], aux): both sides in one [2B, L] forward pass."""
  model = merge(graphdef, params, extra)
  tokens = jnp.concatenate([batch["chosen_tokens"], batch["rejected_tokens"]], axis=0)  # [2B, L]
  lengths = jnp.concatenate([batch["chosen_lengths"], batch["rejected_lengths"]], axis=0)
  scores, aux = model(tokens, lengths)
  B = batch["chosen_tokens"].shape[0]
  return scores[:B], scores[B:], aux


def pointwise_scores(graphdef, params, extra, batch: Mapping[str, jax.Array]):
  """(scores [B], aux)."""
  return merge(graphdef, params, extra)(batch["tokens"], batch["lengths"])


def _make_step(loss_of_batch, graphdef, tx: optax.GradientTransformation, jit: bool):
  def step(state: TrainState, batch: dict[str, jax.Array]):
    def loss_fn(params):
      loss, metrics, aux = loss_of_batch(graphdef, params, state.extra, batch)
      return loss + aux["balance"], (loss, metrics)  # balance: MoE sequence aux loss (0 if off)

    (_, (loss, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state, gnorm = apply_gradients(state, grads, tx)
    return new_state, {"loss": loss, **metrics, "grad_norm": gnorm}

  return jax.jit(step, donate_argnums=0) if jit else step


def _pairwise_objective(graphdef, params, extra, batch):
  chosen, rejected, aux = pairwise_scores(graphdef, params, extra, batch)
  loss, metrics = pairwise_loss(chosen, rejected)
  return loss, metrics, aux


def _pointwise_objective(graphdef, params, extra, batch):
  scores, aux = pointwise_scores(graphdef, params, extra, batch)
  loss, metrics = pointwise_loss(scores, batch["labels"])
  return loss, metrics, aux


def make_pairwise_step(graphdef, tx: optax.GradientTransformation, *, jit: bool = True):
  """`step(state, batch{PAIR_KEYS}) -> (state, metrics)`; jitted with the state donated unless
  `jit=False` (for a runner that jits it with its own shardings)."""
  return _make_step(_pairwise_objective, graphdef, tx, jit)


def make_pointwise_step(graphdef, tx: optax.GradientTransformation, *, jit: bool = True):
  """`step(state, batch{POINT_KEYS}) -> (state, metrics)`; see `make_pairwise_step`."""
  return _make_step(_pointwise_objective, graphdef, tx, jit)


# ------------------------------------------------------------------ evaluation


_pairwise_loss_jit = jax.jit(pairwise_loss)
_pointwise_loss_jit = jax.jit(pointwise_loss)


def _evaluate(loss_kind: str, keys: Sequence[str], graphdef, params, extra,
              batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
  """Scores come from the reward model's shared jitted `score` program (the one rewards use)."""
  score = make_score_fn(graphdef)
  loss_sum = correct = count = 0.0
  for b in batches:
    arrays = {k: np.asarray(b[k]) for k in keys}
    n_rows = arrays[keys[0]].shape[0]
    valid = np.asarray(b["valid"], np.float32) if "valid" in b else np.ones(n_rows, np.float32)
    if loss_kind == "pairwise":
      tokens = np.concatenate([arrays["chosen_tokens"], arrays["rejected_tokens"]])  # [2B, L]
      lengths = np.concatenate([arrays["chosen_lengths"], arrays["rejected_lengths"]])
      scores = score(params, extra, tokens, lengths)
      loss, m = _pairwise_loss_jit(scores[:n_rows], scores[n_rows:], valid)
    else:
      scores = score(params, extra, arrays["tokens"], arrays["lengths"])
      loss, m = _pointwise_loss_jit(scores, arrays["labels"], valid)
    n = float(valid.sum())
    loss_sum, correct, count = loss_sum + float(loss) * n, correct + float(m["accuracy"]) * n, count + n
  if count == 0:
    raise ValueError(f"evaluate_{loss_kind}: no examples in the batches given")
  return {"accuracy": correct / count, "loss": loss_sum / count, "count": count}


def evaluate_pairwise(graphdef, params, extra, batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
  """Held-out accuracy / loss over preference batches (rows with `valid` == 0 are ignored)."""
  return _evaluate("pairwise", PAIR_KEYS, graphdef, params, extra, batches)


def evaluate_pointwise(graphdef, params, extra, batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
  """Held-out accuracy / loss over pointwise batches (rows with `valid` == 0 are ignored)."""
  return _evaluate("pointwise", POINT_KEYS, graphdef, params, extra, batches)


# ------------------------------------------------------------------ records and batches


def _where(record: Mapping[str, Any], i: int) -> str:
  return str(record.get("_loc") or record.get("id") or f"record {i}")


def prepare_records(kind: str, records: Sequence[Mapping[str, Any]]) -> tuple[list[dict], int]:
  """Records with their responses replaced by the text the `kind` RM scores; (kept, skipped).

  Missing fields raise (naming the record); a response with nothing to score (e.g. an
  unterminated `<think>` for helpfulness) skips the record and is counted.
  """
  if kind not in RM_KINDS:
    raise ValueError(f"reward model kind {kind!r} is not one of {RM_KINDS}")
  fields = ("chosen", "rejected") if kind == "helpfulness" else ("response",)
  required = ("prompt",) + fields + (() if kind == "helpfulness" else ("label",))
  out, skipped = [], 0
  for i, r in enumerate(records):
    missing = [f for f in required if f not in r]
    if missing:
      raise ValueError(f"{_where(r, i)}: {kind} reward model record lacks field(s) {missing}")
    if kind == "safety" and int(r["label"]) not in (0, 1):
      raise ValueError(f"{_where(r, i)}: label must be 0 (unsafe) or 1 (safe), got {r['label']!r}")
    selected = {f: select_text(kind, r[f]) for f in fields}
    if any(v is None for v in selected.values()):
      skipped += 1
      continue
    out.append({**r, **selected})
  if skipped:
    log.warning("%s reward model: skipped %d of %d records with no text to score", kind, skipped,
                len(records))
  return out, skipped


def eval_batches(kind: str, records: Sequence[Mapping[str, Any]], tokenizer: Tokenizer, *,
                 batch_size: int, max_len: int,
                 template: Optional[PromptTemplate] = None) -> Iterator[dict[str, np.ndarray]]:
  """Every record once, in order, as fixed-shape batches; the last one is padded (valid = 0).

  Records are passed through `prepare_records`; over-long ones are dropped (as in training).
  """
  template = template or DEFAULT_TEMPLATE
  records, _ = prepare_records(kind, records)
  encoded = []
  for r in records:
    if kind == "helpfulness":
      e = encode.encode_preference(r, tokenizer, template, max_len)
    else:
      e = encode.encode_pointwise(r, tokenizer, template, max_len)
    if "_drop" not in e:
      encoded.append(e)
  pad = tokenizer.pad_id
  for start in range(0, len(encoded), batch_size):
    chunk = encoded[start:start + batch_size]
    n_pad = batch_size - len(chunk)
    valid = np.asarray([1] * len(chunk) + [0] * n_pad, np.int32)
    if kind == "helpfulness":
      chosen, chosen_len = encode.pad_rows([e["chosen"] for e in chunk] + [[]] * n_pad, max_len, pad)
      rejected, rejected_len = encode.pad_rows([e["rejected"] for e in chunk] + [[]] * n_pad, max_len, pad)
      yield {"chosen_tokens": chosen, "chosen_lengths": chosen_len, "rejected_tokens": rejected,
             "rejected_lengths": rejected_len, "valid": valid}
    else:
      tokens, lengths = encode.pad_rows([e["tokens"] for e in chunk] + [[]] * n_pad, max_len, pad)
      labels = np.asarray([e["label"] for e in chunk] + [0] * n_pad, np.int32)
      yield {"tokens": tokens, "lengths": lengths, "labels": labels, "valid": valid}


def evaluate_records(kind: str, model: RewardModel, tokenizer: Tokenizer,
                     records: Sequence[Mapping[str, Any]], *, batch_size: int = 32,
                     max_len: int = 256, template: Optional[PromptTemplate] = None) -> dict[str, float]:
  """Held-out accuracy / loss of `model` on raw records of its kind."""
  graphdef, params, extra = split_reward_model(model)
  batches = eval_batches(kind, records, tokenizer, batch_size=batch_size, max_len=max_len,
                         template=template)
  evaluate = evaluate_pairwise if kind == "helpfulness" else evaluate_pointwise
  return evaluate(graphdef, params, extra, batches)


# ------------------------------------------------------------------ the loop


def training_steps(kind: str, graphdef, tx: optax.GradientTransformation, state: TrainState,
                   batches: Iterator[Mapping[str, Any]], *, start: int, steps: int,
                   place: Callable[[dict], Any] = lambda b: b,
                   ) -> Iterator[tuple[int, TrainState, dict, Mapping[str, Any]]]:
  """The reward-model training loop: for steps start+1 .. `steps`, one update on the next batch;
  yields (step, new state, the step's device metrics, the host batch). `place` puts the numeric
  batch on devices (the stage: a global array on the mesh). The state is donated to each step."""
  if kind not in RM_KINDS:
    raise ValueError(f"reward model kind {kind!r} is not one of {RM_KINDS}")
  keys = PAIR_KEYS if kind == "helpfulness" else POINT_KEYS
  make_step = make_pairwise_step if kind == "helpfulness" else make_pointwise_step
  step_fn = jax.jit(make_step(graphdef, tx, jit=False), donate_argnums=0)
  for step in range(start + 1, steps + 1):
    batch = next(batches)
    state, metrics = step_fn(state, place({k: np.asarray(batch[k]) for k in keys}))
    yield step, state, metrics, batch


def train_reward_model(kind: str, model: RewardModel, tokenizer: Tokenizer,
                       records: Sequence[Mapping[str, Any]], steps: int, batch_size: int,
                       optim: Mapping[str, Any], seed: int = 0, *, max_len: int = 256,
                       template: Optional[PromptTemplate] = None,
                       eval_records: Optional[Sequence[Mapping[str, Any]]] = None,
                       eval_every: int = 0,
                       progress: Optional[Callable[[dict[str, float]], None]] = None,
                       ) -> tuple[RewardModel, list[dict[str, float]]]:
  """Trains a `kind` ("helpfulness" pairwise / "safety" pointwise) reward model for `steps`, in
  memory (no workdir, no checkpoints: the stage, `train.reward_model_stage`, has those).

  A pure function of its inputs: `model` is left untouched and a new RewardModel is returned,
  with the history of per-step metrics (plus `eval/*` every `eval_every` steps and at the end
  when `eval_records` are given). `progress(row)` is called after every step. `optim` is an
  `optim` config for `train.state.make_optimizer` (total_steps defaults to `steps`).
  Single process: every batch is this process's shard of the pipeline.
  """
  if kind not in RM_KINDS:
    raise ValueError(f"reward model kind {kind!r} is not one of {RM_KINDS}")
  if steps < 1 or batch_size < 1:
    raise ValueError(f"train_reward_model: steps and batch_size must be >= 1, got {steps}, {batch_size}")
  template = template or DEFAULT_TEMPLATE
  train_records, _ = prepare_records(kind, records)
  if not train_records:
    raise ValueError(f"train_reward_model: no usable {kind} records")
  make_dataset = preference_dataset if kind == "helpfulness" else pointwise_dataset
  it = iter(make_dataset(train_records, tokenizer, template, batch_size=batch_size, max_len=max_len,
                         seed=seed))
  graphdef, params, extra = split_reward_model(model)
  params, extra = jax.tree.map(jnp.copy, (params, extra))  # the step donates its state; keep `model` valid
  tx = make_optimizer({"total_steps": steps, **dict(optim)})
  state = init_train_state(params, extra, tx, seed=seed)

  def run_eval(state) -> dict[str, float]:
    m = evaluate_records(kind, merge(graphdef, state.params, state.extra), tokenizer, eval_records,
                         batch_size=batch_size, max_len=max_len, template=template)
    return {f"eval/{k}": v for k, v in m.items()}

  history: list[dict[str, float]] = []
  for step, state, metrics, batch in training_steps(kind, graphdef, tx, state, it, start=0, steps=steps):
    row = {"step": float(step), **{k: float(v) for k, v in jax.device_get(metrics).items()},
           "dropped_total": float(batch.get("dropped_total", 0))}
    if eval_records and ((eval_every and step % eval_every == 0) or step == steps):
      row.update(run_eval(state))
    history.append(row)
    if progress is not None:
      progress(row)
  return merge(graphdef, state.params, state.extra), history
