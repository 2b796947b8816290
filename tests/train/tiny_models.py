"""Tiny random policies for the sampling-stage tests (rejection sampling, evaluation)."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r1jax.models.config import ModelConfig
from r1jax.models.transformer import Transformer


def random_model(vocab_size: int, seed: int = 0, max_position_embeddings: int = 512) -> Transformer:
  """N(0, 0.2) weights drawn with NumPy (jax.random init of tiny models compiles slowly on CPU)."""
  cfg = ModelConfig(vocab_size=vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
                    qkv_bias=True, max_position_embeddings=max_position_embeddings)
  rng = np.random.default_rng(seed)
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))

  def draw(path, x):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    v = 1.0 + 0.1 * rng.standard_normal(x.shape) if "norm" in name else 0.2 * rng.standard_normal(x.shape)
    return jnp.asarray(v.astype(x.dtype))

  return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(draw, abstract))
