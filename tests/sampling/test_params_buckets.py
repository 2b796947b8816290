"""SamplingParams validation and shape buckets."""
import pytest

from r1jax.sampling.buckets import BucketPolicy, round_up
from r1jax.sampling.params import SamplingParams


@pytest.mark.parametrize("kw,field", [
    (dict(temperature=-1.0), "temperature"), (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_k=-1), "top_k"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(n=0), "n"), (dict(stop_token_ids=[-2]), "stop_token_ids"),
    (dict(seed=-1), "seed"),
])
def test_bad_sampling_params_name_the_field(kw, field):
  with pytest.raises(ValueError, match=f"SamplingParams.{field}"):
    SamplingParams(**kw)


def test_stop_ids_outside_vocab_rejected():
  with pytest.raises(ValueError, match="stop_token_ids"):
    SamplingParams(stop_token_ids=[5, 100]).validate_vocab(100)


def test_static_key_only_depends_on_program_shape():
  a = SamplingParams(temperature=0.7, top_p=0.9, top_k=20, seed=1, max_new_tokens=10).static_key(1000)
  b = SamplingParams(temperature=1.3, top_p=0.5, top_k=20, seed=2, max_new_tokens=99).static_key(1000)
  assert a == b
  assert SamplingParams(temperature=0, top_k=5, top_p=0.5).static_key(1000) == (True, 0, False, False)
  assert SamplingParams(top_k=2000).static_key(1000).top_k == 0  # k >= V is no truncation


def test_round_up():
  assert [round_up(n, 16) for n in (1, 16, 17, 100, 1024)] == [16, 16, 32, 128, 1024]
  assert round_up(1025, 1, 1024) == 2048 and round_up(5000, 1, 1024) == 5120
  with pytest.raises(ValueError):
    round_up(-1)


def test_bucket_policy():
  b = BucketPolicy()
  assert b.batch(3) == 4 and b.batch(3, shards=8) == 8 and b.batch(9, shards=8) == 16
  assert b.batch(12, shards=6) == 18  # power of two, then a multiple of the shards
  assert b.refill_rows(3, 16) == 4 and b.refill_rows(9, 12) == 12
  assert b.prompt_len(3) == 16 and b.new_tokens(40) == 64
