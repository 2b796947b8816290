"""Preset parameter counts from jax.eval_shape against the published totals; FLOPs accounting."""
import pytest

from r1jax.models.accounting import count_params, flops_per_token
from r1jax.models.presets import PRESETS, PUBLISHED, get_preset


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_total_params_match_published(name):
  total, active = PUBLISHED[name]
  got = count_params(PRESETS[name])
  assert abs(got["total"] / total - 1) < 0.005, (name, got["total"], total)
  if active is None:
    assert got["active"] == got["total"]
  else:
    # Vendors differ on whether embeddings count as "active"; ours includes them.
    assert got["active"] < got["total"] and abs(got["active"] / active - 1) < 0.12, (name, got["active"], active)


def test_deepseek_v3_total_and_active():
  got = count_params(PRESETS["deepseek-v3"])
  assert abs(got["total"] / 671e9 - 1) < 0.005
  assert abs(got["active"] / 37e9 - 1) < 0.02


def test_flops_match_parameter_count_for_dense():
  cfg = get_preset("qwen2.5-7b")
  p = count_params(cfg)
  matmul_params = p["total"] - cfg.vocab_size * cfg.d_model - (2 * cfg.n_layers + 1) * cfg.d_model  # minus lookup, norms
  matmul_params -= cfg.n_layers * cfg.hd * (cfg.n_heads + 2 * cfg.kv_heads)  # biases are adds, not matmuls
  fwd_no_attn = flops_per_token(cfg, seq_len=0, training=False) - cfg.n_layers * cfg.n_heads * 2 * cfg.hd * 1
  assert fwd_no_attn == pytest.approx(2 * matmul_params, rel=1e-9)
  assert flops_per_token(cfg, 4096, training=True) == pytest.approx(3 * flops_per_token(cfg, 4096, training=False))


def test_flops_moe_counts_active_experts_only():
  cfg = get_preset("deepseek-v3")
  p = count_params(cfg)
  f = flops_per_token(cfg, seq_len=0, training=False)
  # ~2 x active params (minus the embedding lookup); far below 2 x total.
  assert 0.9 * 2 * (p["active"] - cfg.vocab_size * cfg.d_model) < f < 1.1 * 2 * p["active"]
  assert f < 0.1 * 2 * p["total"]


def test_unknown_preset():
  with pytest.raises(KeyError, match="unknown model preset"):
    get_preset("gpt-5")
