"""Shared tiny models for the sampler tests (session-scoped, so compiled programs are reused).

Weights are drawn with NumPy into an abstract model: building tiny models with jax.random is
slow to compile on CPU (threefry over many small odd shapes takes tens of seconds).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.models.transformer import Transformer
from r1jax.sampling import BucketPolicy

GQA_CFG = ModelConfig(vocab_size=128, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
                      qkv_bias=True)
# One bucket for every prompt up to 32 tokens and up to 8 rows: few programs to compile.
TEST_BUCKETS = BucketPolicy(min_batch=8, min_prompt_len=32, min_new_tokens=16, min_refill_rows=8)


def random_model(cfg: ModelConfig, seed: int = 0, std: float = 0.2) -> Transformer:
  """A Transformer with N(0, std) weights (norm weights 1 + N(0, 0.1)).

  std 0.2 (not 0.02) gives decisive logits, so greedy comparisons between numerically different
  paths (sharded, latent vs expanded MLA, refill) are free of near-ties.
  """
  rng = np.random.default_rng(seed)
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))

  def draw(path, x):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    if "norm" in name:
      v = 1.0 + 0.1 * rng.standard_normal(x.shape)
    else:
      v = std * rng.standard_normal(x.shape)
    return jnp.asarray(v.astype(x.dtype))

  return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(draw, abstract))


@pytest.fixture(scope="session")
def gqa_model():
  return random_model(GQA_CFG)


@nnx.jit
def _forward(model, tokens):
  return model(tokens).logits


def teacher_forced(model, prompt, completion, temperature: float = 1.0):
  """Trainer-side reference: one full forward (no cache) over prompt + completion.

  Returns (log softmax(logits / temperature) of the completion tokens [n], argmax predictions [n],
  untempered logits [n, V]).
  """
  full = np.concatenate([np.asarray(prompt), np.asarray(completion)]).astype(np.int32)
  padded = np.zeros((max(64, len(full)),), np.int32)  # trailing padding cannot change causal logits
  padded[:len(full)] = full
  logits = np.asarray(_forward(model, jnp.asarray(padded)[None])[0], np.float64)
  pred = logits[len(prompt) - 1:len(full) - 1]  # [n, V] logits that predicted each completion token
  z = pred / temperature
  logz = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
  lp = z[np.arange(len(completion)), np.asarray(completion)] - logz
  return lp, pred.argmax(-1), pred
