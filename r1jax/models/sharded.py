"""The policy built directly in its sharding on a mesh (parallel/ holds the rules, not the model)."""
from __future__ import annotations

from typing import Mapping

from flax import nnx
from jax.sharding import Mesh

from r1jax.models.config import ModelConfig
from r1jax.models.transformer import Transformer
from r1jax.parallel.sharding import RULES, create_sharded


def create_sharded_model(cfg: ModelConfig, mesh: Mesh, seed: int = 0, rules: Mapping = RULES) -> Transformer:
  """A `Transformer` whose every parameter is created in its mesh sharding (see `create_sharded`)."""
  return create_sharded(lambda: Transformer(cfg, rngs=nnx.Rngs(seed)), mesh, rules)
