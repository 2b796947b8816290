"""Reward model head and training: losses against NumPy, last-token reading, learning on the
synthetic preference / safety corpora, purity of the training loop."""
import numpy as np
import pytest
import jax
from flax import nnx

from r1jax.convert.hf import flat_variables
from r1jax.data.pipelines import preference_dataset, pointwise_dataset
from r1jax.data.tasks import corpora
from r1jax.data.tokenizer import train_sentencepiece
from r1jax.models.config import ModelConfig
from r1jax.models.reward_head import RewardModel, make_score_fn, split_reward_model
from r1jax.models.transformer import Transformer
from r1jax.rewards.model import DEFAULT_TEMPLATE
from r1jax.train import reward_model as trm

# One max_len, and 2 x 16 pairs = 32 pointwise rows: every scoring pass is one [32, 80] program.
MAX_LEN, PAIR_BATCH, POINT_BATCH, STEPS = 80, 16, 32, 30
OPTIM = {"learning_rate": 3e-3, "warmup_steps": 5, "schedule": "constant"}


def _np_log_sigmoid(x):
  return -np.logaddexp(0.0, -x)


@pytest.fixture(scope="module")
def pref():
  return corpora.preference_corpus(400, seed=0)


@pytest.fixture(scope="module")
def safety():
  return corpora.safety_corpus(300, seed=0)


@pytest.fixture(scope="module")
def tok(pref, safety):
  lines = [f"{r['prompt']} {r['chosen']} {r['rejected']}" for r in pref]
  lines += [f"{r['prompt']} {r['response']}" for r in safety]
  return train_sentencepiece(lines, vocab_size=1024)


@pytest.fixture(scope="module")
def cfg(tok):
  return ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                     head_dim=8, ffn_dim=64, max_position_embeddings=128)


@pytest.fixture(scope="module")
def base_rm(cfg):
  return RewardModel(cfg, rngs=nnx.Rngs(0))


def _host_params(model):
  return jax.tree.map(np.asarray, nnx.state(model, nnx.Param))


@pytest.fixture(scope="module")
def helpfulness_run(base_rm, tok, pref):
  before = _host_params(base_rm)
  model, history = trm.train_reward_model("helpfulness", base_rm, tok, pref[:320], STEPS, PAIR_BATCH,
                                          OPTIM, seed=0, max_len=MAX_LEN, eval_records=pref[320:])
  return model, history, before


@pytest.fixture(scope="module")
def safety_run(base_rm, tok, safety):
  model, history = trm.train_reward_model("safety", base_rm, tok, safety[:240], STEPS, POINT_BATCH,
                                          OPTIM, seed=0, max_len=MAX_LEN, eval_records=safety[240:])
  return model, history


# ------------------------------------------------------------------ losses


def test_pairwise_loss_matches_numpy():
  rng = np.random.default_rng(0)
  c, r = rng.normal(size=64).astype(np.float32) * 3, rng.normal(size=64).astype(np.float32) * 3
  mask = (rng.random(64) < 0.7).astype(np.float32)
  loss, m = jax.jit(trm.pairwise_loss)(c, r)
  np.testing.assert_allclose(float(loss), np.mean(-_np_log_sigmoid(c - r)), rtol=1e-5)
  np.testing.assert_allclose(float(m["accuracy"]), np.mean(c > r), rtol=1e-6)
  loss, m = jax.jit(trm.pairwise_loss)(c, r, mask)
  keep = mask > 0
  np.testing.assert_allclose(float(loss), np.mean(-_np_log_sigmoid(c[keep] - r[keep])), rtol=1e-5)
  np.testing.assert_allclose(float(m["accuracy"]), np.mean(c[keep] > r[keep]), rtol=1e-6)
  # Large margins stay finite (log-sigmoid, not log of a sigmoid that underflows).
  loss, _ = jax.jit(trm.pairwise_loss)(np.float32([-200.0]), np.float32([200.0]))
  np.testing.assert_allclose(float(loss), 400.0, rtol=1e-6)


def test_pointwise_loss_matches_numpy():
  rng = np.random.default_rng(1)
  s = rng.normal(size=64).astype(np.float32) * 4
  y = rng.integers(0, 2, 64).astype(np.int32)
  p = 1 / (1 + np.exp(-s.astype(np.float64)))
  bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
  loss, m = jax.jit(trm.pointwise_loss)(s, y)
  np.testing.assert_allclose(float(loss), bce.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(m["accuracy"]), np.mean((s > 0) == (y == 1)), rtol=1e-6)
  mask = (rng.random(64) < 0.5).astype(np.float32)
  loss, _ = jax.jit(trm.pointwise_loss)(s, y, mask)
  np.testing.assert_allclose(float(loss), bce[mask > 0].mean(), rtol=1e-5)


# ------------------------------------------------------------------ the head


def test_head_reads_last_real_token(base_rm, cfg):
  graphdef, params, extra = split_reward_model(base_rm)
  score = make_score_fn(graphdef)
  rng = np.random.default_rng(2)
  n = 23
  row = rng.integers(4, cfg.vocab_size, n).astype(np.int32)
  # The same row padded with zeros, and padded with random ids next to other random rows.
  a = np.zeros((32, MAX_LEN), np.int32)
  a[5, :n] = row
  la = np.full(32, 10, np.int32)
  la[5] = n
  b = rng.integers(4, cfg.vocab_size, (32, MAX_LEN)).astype(np.int32)
  b[17, :n] = row
  lb = rng.integers(1, MAX_LEN + 1, 32).astype(np.int32)
  lb[17] = n
  sa, sb = np.asarray(score(params, extra, a, la)), np.asarray(score(params, extra, b, lb))
  np.testing.assert_allclose(sa[5], sb[17], rtol=1e-5, atol=1e-6)
  # Changing the last real token changes the score; a zero-length row scores exactly 0.
  b2 = b.copy()
  b2[17, n - 1] = (b2[17, n - 1] + 1) % cfg.vocab_size
  lb2 = lb.copy()
  lb2[0] = 0
  sb2 = np.asarray(score(params, extra, b2, lb2))
  assert abs(sb2[17] - sb[17]) > 1e-6
  assert sb2[0] == 0.0

  # Independent reference, no padding at all: the backbone on the bare row, hidden[-1] . w + b.
  gd, st = nnx.split(base_rm.backbone)
  hidden = jax.jit(lambda st, t: nnx.merge(gd, st)(t, return_logits=False).hidden)(st, row[None])
  ref = np.asarray(hidden)[0, -1] @ np.asarray(base_rm.score_head[...]) + float(base_rm.score_bias[...])
  np.testing.assert_allclose(sa[5], ref, rtol=1e-4, atol=1e-5)


def test_split_leaves_lm_head_out_of_the_trainable_params(base_rm):
  _, params, extra = split_reward_model(base_rm)
  trainable, frozen = set(flat_variables(params)), set(flat_variables(extra))
  assert frozen == {"backbone.lm_head"}
  assert {"score_head", "score_bias", "backbone.embed_tokens", "backbone.norm.weight"} <= trainable
  assert len(trainable) + 1 == len(flat_variables(nnx.state(base_rm)))


def test_from_policy_reuses_the_backbone_without_aliasing(cfg):
  policy = Transformer(cfg, rngs=nnx.Rngs(7))
  rm = RewardModel.from_policy(policy, seed=3)
  np.testing.assert_array_equal(np.asarray(rm.backbone.embed_tokens[...]),
                                np.asarray(policy.embed_tokens[...]))
  np.testing.assert_array_equal(np.asarray(rm.backbone.layers[1].mlp.down_proj.kernel[...]),
                                np.asarray(policy.layers[1].mlp.down_proj.kernel[...]))
  rm.backbone.norm.weight[...] = 2 * rm.backbone.norm.weight[...]
  np.testing.assert_array_equal(np.asarray(policy.norm.weight[...]), np.ones(cfg.d_model))


def test_backbone_with_another_config_is_rejected(cfg):
  other = nnx.eval_shape(lambda: Transformer(cfg.replace(ffn_dim=96), rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="backbone.cfg"):
    RewardModel(cfg, rngs=nnx.Rngs(0), backbone=other)


# ------------------------------------------------------------------ records


def test_prepare_records_selects_the_scored_text():
  recs = [{"prompt": "q", "chosen": "<think>long reasoning</think>\n\n Good answer.",
           "rejected": "Bad answer."},
          {"prompt": "q", "chosen": "<think>never closed", "rejected": "x"}]
  kept, skipped = trm.prepare_records("helpfulness", recs)
  assert skipped == 1 and len(kept) == 1
  assert kept[0]["chosen"] == "Good answer." and kept[0]["rejected"] == "Bad answer."
  whole = "<think>plan</think> answer"
  kept, _ = trm.prepare_records("safety", [{"prompt": "q", "response": whole, "label": 1}])
  assert kept[0]["response"] == whole
  with pytest.raises(ValueError, match="pair7.*rejected"):
    trm.prepare_records("helpfulness", [{"prompt": "q", "chosen": "a", "id": "pair7"}])
  with pytest.raises(ValueError, match="label"):
    trm.prepare_records("safety", [{"prompt": "q", "response": "a", "label": 3}])
  with pytest.raises(ValueError, match="kind"):
    trm.prepare_records("pairwise", recs)


# ------------------------------------------------------------------ training


def _first_batch(dataset, records, tok, batch_size):
  return next(iter(dataset(records, tok, DEFAULT_TEMPLATE, batch_size=batch_size, max_len=MAX_LEN,
                           seed=0)))


def test_pairwise_rm_learns_helpfulness(helpfulness_run, base_rm, tok, pref):
  model, history, before = helpfulness_run
  assert len(history) == STEPS
  assert history[-1]["eval/count"] == 80
  assert history[-1]["eval/accuracy"] > 0.7, history[-1]
  assert np.mean([h["loss"] for h in history[-10:]]) < 0.5 * history[0]["loss"]
  # The step's first loss is the Bradley–Terry loss of the untrained model on the first batch.
  records, _ = trm.prepare_records("helpfulness", pref[:320])
  batch = _first_batch(preference_dataset, records, tok, PAIR_BATCH)
  graphdef, params, extra = split_reward_model(base_rm)
  tokens = np.concatenate([batch["chosen_tokens"], batch["rejected_tokens"]])
  lengths = np.concatenate([batch["chosen_lengths"], batch["rejected_lengths"]])
  s = np.asarray(make_score_fn(graphdef)(params, extra, tokens, lengths), np.float64)
  margin = s[:PAIR_BATCH] - s[PAIR_BATCH:]
  np.testing.assert_allclose(history[0]["loss"], np.mean(-_np_log_sigmoid(margin)), rtol=1e-4)
  np.testing.assert_allclose(history[0]["accuracy"], np.mean(margin > 0), atol=1e-6)
  # Pure: the input model is untouched (its buffers were not donated either).
  after = _host_params(base_rm)
  jax.tree.map(np.testing.assert_array_equal, before, after)
  trained = _host_params(model)
  assert not np.allclose(trained["score_head"], before["score_head"])


def test_pointwise_rm_separates_safe_from_unsafe(safety_run, base_rm, tok, safety):
  model, history = safety_run
  assert history[-1]["eval/accuracy"] > 0.8, history[-1]
  # Held-out probabilities: safe responses score higher than unsafe ones on average.
  batches = list(trm.eval_batches("safety", safety[240:], tok, batch_size=POINT_BATCH, max_len=MAX_LEN))
  graphdef, params, extra = split_reward_model(model)
  score = make_score_fn(graphdef)
  probs, labels = [], []
  for b in batches:
    keep = b["valid"] > 0
    probs.append(1 / (1 + np.exp(-np.asarray(score(params, extra, b["tokens"], b["lengths"]))[keep])))
    labels.append(b["labels"][keep])
  probs, labels = np.concatenate(probs), np.concatenate(labels)
  assert len(probs) == 60
  assert probs[labels == 1].mean() - probs[labels == 0].mean() > 0.5
  # First-step loss equals BCE of the untrained model's scores on the first batch.
  records, _ = trm.prepare_records("safety", safety[:240])
  batch = _first_batch(pointwise_dataset, records, tok, POINT_BATCH)
  g0, p0, e0 = split_reward_model(base_rm)
  s = np.asarray(make_score_fn(g0)(p0, e0, batch["tokens"], batch["lengths"]), np.float64)
  y = batch["labels"]
  np.testing.assert_allclose(history[0]["loss"], np.mean(np.logaddexp(0, s) - y * s), rtol=1e-4)


def test_evaluate_ignores_padded_rows(helpfulness_run, tok, pref):
  model, _, _ = helpfulness_run
  graphdef, params, extra = split_reward_model(model)
  batches = list(trm.eval_batches("helpfulness", pref[320:390], tok, batch_size=PAIR_BATCH,
                                  max_len=MAX_LEN))
  assert [int(b["valid"].sum()) for b in batches] == [16, 16, 16, 16, 6]
  m = trm.evaluate_pairwise(graphdef, params, extra, batches)
  assert m["count"] == 70
  # Same answer with the padded rows of the last batch replaced by real (but invalid) rows.
  last = dict(batches[-1])
  for k in trm.PAIR_KEYS:
    last[k] = last[k].copy()
    last[k][6:] = batches[0][k][6:]
  m2 = trm.evaluate_pairwise(graphdef, params, extra, batches[:-1] + [last])
  np.testing.assert_allclose(m2["accuracy"], m["accuracy"])
  np.testing.assert_allclose(m2["loss"], m["loss"], rtol=1e-6)


def test_train_rejects_bad_arguments(base_rm, tok, pref):
  with pytest.raises(ValueError, match="kind"):
    trm.train_reward_model("pairwise", base_rm, tok, pref, 1, 4, OPTIM)
  with pytest.raises(ValueError, match="steps"):
    trm.train_reward_model("helpfulness", base_rm, tok, pref, 0, 4, OPTIM)
