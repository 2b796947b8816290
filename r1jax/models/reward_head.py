"""A scalar reward model: the policy decoder as backbone plus a linear head on the last real token.

    rm = RewardModel(cfg, rngs=nnx.Rngs(0))          # random backbone (tests, from scratch)
    rm = RewardModel.from_policy(sft_policy)          # the paper's recipe: start from a policy
    scores = rm.score(tokens, lengths)                # [B] fp32

The head reads the final-norm hidden state at index `lengths - 1` of each right-padded row, so
padding after a row never changes its score (attention is causal and padding has segment id 0).
A row of length 0 scores exactly 0.

The backbone keeps its LM head (`backbone.lm_head`) so it stays a complete `Transformer` that
`convert.hf` can save and load, but the reward model never reads it; `split_reward_model` puts it
outside the trainable parameters so the optimizer holds no state for it.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.models.layers import dtype_of
from r1jax.models.transformer import Transformer

# Trainable: every Param except the unused LM head.
TRAINABLE = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("lm_head")))


class RewardModel(nnx.Module):
  """`Transformer` backbone + `score_head` [D] (logical axis "embed") + scalar `score_bias`."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, backbone: Optional[Transformer] = None):
    if backbone is not None and backbone.cfg != cfg:
      raise ValueError("RewardModel: backbone.cfg differs from the cfg given")
    self.cfg = cfg
    self.backbone = backbone if backbone is not None else Transformer(cfg, rngs=rngs)
    # std 1/sqrt(D+1): the post-norm hidden state has unit RMS, so initial scores are ~N(0, 1).
    key = rngs.params()
    weight = jax.random.normal(key, (cfg.d_model,), jnp.float32) / np.sqrt(cfg.d_model + 1)
    self.score_head = nnx.Param(weight.astype(dtype_of(cfg.param_dtype)), axes=("embed",))
    self.score_bias = nnx.Param(jnp.zeros((), jnp.float32), axes=())

  @classmethod
  def from_policy(cls, policy: Transformer, *, seed: int = 0) -> "RewardModel":
    """A reward model whose backbone starts from `policy`'s weights (e.g. the SFT checkpoint).

    The backbone is a fresh module over the same (immutable) arrays, so later in-place updates
    of either model never reach the other. The head starts random (seed).
    """
    backbone = nnx.clone(policy)  # new Variables over the same buffers (no weight copy)
    return cls(policy.cfg, rngs=nnx.Rngs(seed), backbone=backbone)

  @classmethod
  def from_backbone(cls, backbone: Transformer, weight, bias) -> "RewardModel":
    """A reward model from a backbone and given head values (weight [D], bias scalar)."""
    weight = np.asarray(weight)
    if weight.shape != (backbone.cfg.d_model,):
      raise ValueError(f"reward head weight has shape {weight.shape}, expected ({backbone.cfg.d_model},)")
    rm = cls(backbone.cfg, rngs=nnx.Rngs(0), backbone=backbone)
    rm.score_head[...] = jnp.asarray(weight, rm.score_head[...].dtype)
    rm.score_bias[...] = jnp.asarray(bias, jnp.float32).reshape(())
    return rm

  def __call__(self, tokens: jax.Array, lengths: jax.Array) -> tuple[jax.Array, dict]:
    """tokens: [B, T] int32 right-padded; lengths: [B]. Returns (scores [B] fp32, model aux)."""
    B, T = tokens.shape
    lengths = lengths.astype(jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    segment_ids = (positions < lengths[:, None]).astype(jnp.int32)  # [B, T], 0 = padding
    out = self.backbone(tokens, positions, segment_ids, return_logits=False)
    last = jnp.clip(lengths - 1, 0, T - 1)
    hidden = jnp.take_along_axis(out.hidden, last[:, None, None], axis=1)[:, 0]  # [B, D]
    scores = hidden.astype(jnp.float32) @ self.score_head[...].astype(jnp.float32) + self.score_bias[...]
    return jnp.where(lengths > 0, scores, 0.0), out.aux

  def score(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """[B] fp32 scores of right-padded rows `tokens` [B, T] with `lengths` [B] real tokens."""
    return self(tokens, lengths)[0]

  def score_segments(self, tokens: jax.Array, segment_ids: jax.Array) -> jax.Array:
    """Like `score`, with the lengths read from right-padded segment ids (0 = padding)."""
    return self.score(tokens, (segment_ids > 0).sum(-1))


def split_reward_model(model: RewardModel):
  """(graphdef, params, extra): params = trainable Params; extra = the LM head + non-Param state."""
  return nnx.split(model, TRAINABLE, ...)


@functools.partial(jax.jit, static_argnums=0)
def _score(graphdef, params, extra, tokens, lengths):
  return nnx.merge(graphdef, params, extra).score(tokens, lengths)


def make_score_fn(graphdef):
  """A jitted `(params, extra, tokens [B, T], lengths [B]) -> scores [B]`; weights are arguments.

  One module-level program cache keyed by the (hashable) graphdef: reward models of the same
  architecture share compiled programs however many scorers are built.
  """
  return functools.partial(_score, graphdef)
