"""GRPO: turn a rollout into training arrays, score it, and update the policy.

A rollout is G completions for each of P prompts (rows i*G .. i*G+G-1 belong to prompt i; the
group ids travel with the rows as an array). Sequences are laid out as prompt + completion,
right-padded; the loss covers exactly the completion tokens, the stop token included:

    tokens      p0 p1 p2 c0 c1 c2(stop) pad ...
    targets     p1 p2 c0 c1 c2   0      ...
    completion  0  0  1  1  1    0      ...    (position t predicts targets[t])

Old log-probs are the sampler's per-token policy log-probs (fixed across the minibatch passes,
so the ratio really moves after the first update); reference log-probs come from the same fused
kernel under the reference parameters, without gradients. All three are of the same tempered
distribution softmax(logits / rollout_temperature), so the trained policy is the sampled one.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from r1jax.rl.advantages import group_advantages, kl_penalized_rewards
from r1jax.rl.config import GRPOConfig
from r1jax.rl.logprobs import token_logprobs
from r1jax.rl.loss import combine_microbatch_metrics, grpo_loss
from r1jax.train.state import (TrainState, accumulate_gradients, apply_gradients, merge, micro_batch_count,
                               microbatches, router_load_shape, unmicrobatch, update_router_biases)


def round_up(n: int, multiple: int) -> int:
  return max(multiple, -(-n // multiple) * multiple)


def build_rollout_batch(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                        completion_logprobs: np.ndarray, truncated: np.ndarray, *,
                        length_multiple: int = 64) -> dict[str, np.ndarray]:
  """Numpy training arrays [N, L] for N = len(completions) rows; prompts[i] is row i's prompt."""
  n = len(completions)
  lens = [len(p) + len(c) for p, c in zip(prompts, completions)]
  L = round_up(max(lens), length_multiple)
  out = {k: np.zeros((n, L), np.int32) for k in ("tokens", "targets", "positions", "segment_ids")}
  out["completion_mask"] = np.zeros((n, L), np.float32)
  out["old_logprobs"] = np.zeros((n, L), np.float32)
  for i, (p, c) in enumerate(zip(prompts, completions)):
    seq = np.asarray(list(p) + list(c), np.int32)
    m, lp = len(seq), len(p)
    out["tokens"][i, :m] = seq
    out["targets"][i, :m - 1] = seq[1:]
    out["positions"][i, :m] = np.arange(m)
    out["segment_ids"][i, :m] = 1
    out["completion_mask"][i, lp - 1:lp - 1 + len(c)] = 1.0
    out["old_logprobs"][i, lp - 1:lp - 1 + len(c)] = completion_logprobs[i, :len(c)]
  out["truncated"] = np.asarray(truncated, bool)
  return out


def policy_logprobs(graphdef, params, extra, batch, *, chunk_size: int, entropy: bool = False,
                    temperature: float = 1.0):
  """Per-token log-probs of `targets` ([B, L]) under softmax(logits / temperature) of the given
  parameters (fused, chunked); GRPO passes its rollout temperature. `entropy`: also the per-token
  entropy, as a logged value (no gradient, so no backward cost)."""
  model = merge(graphdef, params, extra)
  out = model(batch["tokens"], batch["positions"], batch["segment_ids"], return_logits=False)
  res = token_logprobs(out.hidden, model.head_kernel(), batch["targets"], chunk_size=chunk_size,
                       compute_entropy=entropy, entropy_grad=False, temperature=temperature)
  return res, out.aux


def make_ref_logprobs_fn(graphdef, chunk_size: int, temperature: float = 1.0, micro_batch_size: int = 0):
  """Reference log-probs [B, L] without gradients, `micro_batch_size` rows at a time (0: all)."""
  def full(ref_params, extra, batch):
    lp, _ = policy_logprobs(graphdef, ref_params, extra, batch, chunk_size=chunk_size, temperature=temperature)
    return jax.lax.stop_gradient(lp)

  def fn(ref_params, extra, batch):
    n = micro_batch_count(batch["tokens"].shape[0], micro_batch_size, "reference log-probs")
    if n == 1:
      return full(ref_params, extra, batch)
    mbs = microbatches({k: batch[k] for k in _MODEL_KEYS}, n)
    return unmicrobatch(jax.lax.map(lambda mb: full(ref_params, extra, mb), mbs))
  return fn


_MODEL_KEYS = ("tokens", "positions", "segment_ids", "targets")


def make_update_step(graphdef, tx: optax.GradientTransformation, cfg: GRPOConfig, *,
                     router_bias_rate: float = 0.0, use_ref: bool = True):
  """One optimizer step on one minibatch of whole groups (jit it; donate the state). With
  `cfg.micro_batch_size` the gradient is accumulated over micro-batches of that many rows, each
  loss normalised by the whole minibatch's token / sequence counts: the same update, less memory."""

  def loss_fn(params, extra, mb, total_tokens=None, total_sequences=None, balance_weight=1.0):
    (lp, ent), aux = policy_logprobs(graphdef, params, extra, mb, chunk_size=cfg.logprob_chunk_size, entropy=True,
                                     temperature=cfg.rollout_temperature)
    loss, metrics = grpo_loss(lp, mb["old_logprobs"], mb["ref_logprobs"] if use_ref else None, mb["advantages"],
                              mb["completion_mask"], cfg, truncated=mb["truncated"], entropy=ent,
                              total_tokens=total_tokens, total_sequences=total_sequences)
    return loss + balance_weight * aux["balance"], (metrics, aux["load"])

  def accumulated(params, extra, mb, n: int):
    """(loss, (metrics, loads)), grads summed over `n` micro-batches."""
    mask = mb["completion_mask"] > 0
    total_tokens = jnp.maximum(jnp.sum(mask).astype(jnp.float32), 1.0)
    total_sequences = jnp.maximum(jnp.sum(jnp.any(mask, axis=-1)).astype(jnp.float32), 1.0)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def micro_step(micro):
      (loss, (metrics, load)), g = grad_fn(params, extra, micro, total_tokens, total_sequences, 1.0 / n)
      return loss, load, metrics, g

    loss, grads, loads, stacked = accumulate_gradients(micro_step, params, microbatches(mb, n),
                                                       router_load_shape(graphdef, params, extra))
    return (loss, (combine_microbatch_metrics(stacked), loads)), grads

  def step(state: TrainState, mb):
    n = micro_batch_count(mb["advantages"].shape[0], cfg.micro_batch_size, "GRPO update (grpo.micro_batch_size)")
    if n > 1:
      (loss, (metrics, loads)), grads = accumulated(state.params, state.extra, mb, n)
    else:
      (loss, (metrics, loads)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.extra, mb)
    new_state, gnorm = apply_gradients(state, grads, tx)
    extra = update_router_biases(graphdef, new_state.params, state.extra, loads, router_bias_rate)
    new_state = new_state.replace(extra=extra)
    # NaN guard: a non-finite loss or gradient leaves params, optimizer state and router biases as
    # they were (the step counter still advances, so step numbers stay minibatch numbers).
    finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    keep = lambda new, old: jnp.where(finite, new, old)
    guarded = state.replace(step=new_state.step, params=jax.tree.map(keep, new_state.params, state.params),
                            opt_state=jax.tree.map(keep, new_state.opt_state, state.opt_state),
                            extra=jax.tree.map(keep, new_state.extra, state.extra))
    return guarded, {**metrics, "grad_norm": gnorm, "skipped_nonfinite": 1.0 - finite.astype(jnp.float32)}

  return step


@dataclasses.dataclass
class ScoredRollout:
  batch: dict  # numpy arrays [N, L] + advantages [N] + truncated [N]
  rewards: np.ndarray  # [N] combined reward
  metrics: dict


def length_by_correctness(lengths: np.ndarray, accuracy: np.ndarray | None) -> dict[str, float]:
  """Mean response length of correct (accuracy >= 0.5) and incorrect rows (absent if none)."""
  if accuracy is None:
    return {}
  ok = np.asarray(accuracy) >= 0.5
  out = {}
  if ok.any():
    out["rollout/response_length/correct"] = float(np.mean(lengths[ok]))
  if (~ok).any():
    out["rollout/response_length/incorrect"] = float(np.mean(lengths[~ok]))
  return out


def score_rollout(rollout, cfg: GRPOConfig, *, ref_logprobs_fn=None, length_multiple: int = 64) -> ScoredRollout:
  """A graded `train.rollout.Rollout` -> group advantages -> the training batch and its `rollout/`
  metrics (of the trained rows; the reward metrics of every sampled row are the rollout's own)."""
  gen = rollout.gen
  group_ids = np.asarray(gen.prompt_index, np.int32)
  num_groups = rollout.num_groups
  row_prompts = [rollout.prompts[g] for g in group_ids]
  rewards = np.asarray(rollout.rewards, np.float32)
  truncated = np.asarray([r == "length" for r in gen.finish_reasons])
  batch = build_rollout_batch(row_prompts, gen.completions(), gen.logprobs, truncated,
                              length_multiple=length_multiple)
  metrics = {}
  if ref_logprobs_fn is not None:
    batch["ref_logprobs"] = np.asarray(ref_logprobs_fn(batch))
  else:
    batch["ref_logprobs"] = np.zeros_like(batch["old_logprobs"])
  adv_rewards = rewards
  if cfg.kl_in_reward and ref_logprobs_fn is not None:
    adv_rewards, seq_kl = kl_penalized_rewards(
        jnp.asarray(rewards), jnp.asarray(batch["old_logprobs"]), jnp.asarray(batch["ref_logprobs"]),
        jnp.asarray(batch["completion_mask"]), cfg.beta, kind=cfg.kl_estimator, clamp=cfg.kl_log_ratio_clamp,
        k3_max=cfg.kl_k3_max)
    metrics["rollout/kl_sequence_mean"] = float(jnp.mean(seq_kl))
  adv, stats = group_advantages(jnp.asarray(adv_rewards), jnp.asarray(group_ids), num_groups,
                                scale_by_std=cfg.scale_rewards_by_std, eps=cfg.advantage_eps,
                                ddof=cfg.advantage_std_ddof)
  batch["advantages"] = np.asarray(adv, np.float32)
  # The mean reward is logged once, as reward/mean (every sampled row); here the trained rows' spread.
  metrics.update({f"rollout/{k}": float(v) for k, v in stats.items() if k != "reward_mean"})
  lengths = np.asarray(gen.lengths)
  metrics.update({"rollout/response_length/mean": float(np.mean(lengths)),
                  "rollout/response_length/max": float(np.max(lengths)),
                  "rollout/truncated_fraction": float(truncated.mean())})
  metrics.update(length_by_correctness(lengths, rollout.components.get("accuracy")))
  return ScoredRollout(batch=batch, rewards=rewards, metrics=metrics)


def minibatch_slices(num_groups: int, group_size: int, num_minibatches: int, rng: Optional[np.random.Generator]):
  """Row indices of each minibatch: whole groups only (a shuffled group order if rng is given)."""
  if num_groups % num_minibatches:
    raise ValueError(f"{num_groups} groups in the rollout do not split into num_minibatches={num_minibatches}")
  order = rng.permutation(num_groups) if rng is not None else np.arange(num_groups)
  per = num_groups // num_minibatches
  out = []
  for m in range(num_minibatches):
    groups = np.sort(order[m * per:(m + 1) * per])
    out.append((groups[:, None] * group_size + np.arange(group_size)[None]).reshape(-1))
  return out
