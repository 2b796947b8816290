"""GRPO objective in pure JAX: group advantages, KL estimators, the fused chunked log-prob kernel,
the clipped-surrogate loss with its aggregation modes, and the GRPO config with named recipes."""
from r1jax.rl.advantages import group_advantages, kl_penalized_rewards
from r1jax.rl.config import LEARNING_RATES, RECIPES, GRPOConfig, get_recipe, r1_recipe
from r1jax.rl.kl import kl_estimate
from r1jax.rl.logprobs import naive_token_logprobs, token_logprobs
from r1jax.rl.loss import grpo_loss

__all__ = [
    "GRPOConfig", "RECIPES", "LEARNING_RATES", "get_recipe", "r1_recipe", "group_advantages", "kl_penalized_rewards",
    "kl_estimate", "token_logprobs", "naive_token_logprobs", "grpo_loss",
]
