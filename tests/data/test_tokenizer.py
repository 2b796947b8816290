"""Tokenizer round trips (unicode, digits, tags) for both backends, special ids, HF parity."""
import os

import pytest

from r1jax.data.tokenizer import (REASONING_TAGS, HFTokenizer, SentencePieceTokenizer,
                                  load_tokenizer)
from tests.data.conftest import QWEN_SPECIALS, UNICODE_SAMPLES


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_sentencepiece_round_trip(sp_tokenizer, text):
  ids = sp_tokenizer.encode(text)
  assert sp_tokenizer.decode(ids) == text
  assert sp_tokenizer.decode(ids, skip_special=True) == text


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_hf_round_trip(hf_tokenizer, text):
  ids = hf_tokenizer.encode(text)
  assert hf_tokenizer.decode(ids) == text
  assert hf_tokenizer.decode(ids, skip_special=True) == text


@pytest.mark.parametrize("backend", ["sp", "hf"])
def test_tags_are_single_tokens(backend, sp_tokenizer, hf_tokenizer):
  tok = sp_tokenizer if backend == "sp" else hf_tokenizer
  ids = tok.tag_ids
  assert set(ids) == set(REASONING_TAGS)
  assert all(i is not None for i in ids.values())
  assert len(set(ids.values())) == 4
  assert (tok.think_start_id, tok.think_end_id, tok.answer_start_id, tok.answer_end_id) == tuple(
      ids[t] for t in REASONING_TAGS)
  for tag, i in ids.items():
    assert tok.encode(tag) == [i]
    assert tok.id_to_token(i) == tag
    assert not tok.is_special(i)  # content tokens: skip_special must keep them
  text = "x<think>y</think><answer>3</answer>"
  ids_text = tok.encode(text)
  for tag, i in ids.items():
    assert ids_text.count(i) == 1


def test_sentencepiece_special_ids_and_digits(sp_tokenizer):
  tok = sp_tokenizer
  assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
  assert [tok.tag_ids[t] for t in REASONING_TAGS] == [4, 5, 6, 7]
  assert tok.vocab_size <= 512
  # split_digits: every digit its own token, so numbers tokenize the same in any context
  ids = tok.encode("90817")
  assert len(ids) == 5 and tok.decode(ids) == "90817"
  ids = tok.encode("ab", add_bos=True, add_eos=True)
  assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
  assert tok.decode(ids, skip_special=True) == "ab"
  assert tok.decode(ids) == "<s>ab</s>"
  assert tok.token_to_id("definitely-not-a-piece") is None
  assert tok.stop_ids == (tok.eos_id,)
  batch = tok.encode_batch(list(UNICODE_SAMPLES), add_bos=True, add_eos=True)
  assert batch == [tok.encode(t, add_bos=True, add_eos=True) for t in UNICODE_SAMPLES]


def test_sentencepiece_decode_with_specials_mid_sequence(sp_tokenizer):
  tok = sp_tokenizer
  a, b = tok.encode("first part"), tok.encode(" second part")
  ids = a + [tok.eos_id] + b + [tok.pad_id]
  assert tok.decode(ids, skip_special=True) == "first part second part"
  assert tok.decode(ids) == "first part</s> second part<pad>"


def test_sentencepiece_save_load(sp_tokenizer, tmp_path):
  path = os.path.join(tmp_path, "tok.model")
  sp_tokenizer.save(path)
  for tok in (SentencePieceTokenizer.from_file(path), load_tokenizer(path)):
    assert isinstance(tok, SentencePieceTokenizer)
    for text in UNICODE_SAMPLES:
      assert tok.encode(text) == sp_tokenizer.encode(text)


def test_sentencepiece_external_model_with_dummy_prefix(tmp_path):
  """A model trained elsewhere (default normaliser, dummy prefix) still decodes in runs."""
  import io

  import sentencepiece as spm

  buf = io.BytesIO()
  lines = [f"the quick brown fox {i} jumps" for i in range(300)]
  spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=80,
                                 model_type="bpe", minloglevel=2, hard_vocab_limit=False,
                                 pad_id=0, unk_id=1, bos_id=2, eos_id=3)
  tok = SentencePieceTokenizer(buf.getvalue())
  ids = tok.encode("the fox", add_bos=True) + tok.encode("brown fox")
  reference = spm.SentencePieceProcessor(model_proto=buf.getvalue())
  assert tok.decode(ids, skip_special=True) == reference.decode(ids)
  with_eos = tok.encode("the fox") + [tok.eos_id] + tok.encode("jumps")
  assert tok.decode(with_eos) == "the fox</s> jumps"


def test_hf_special_tokens(hf_tokenizer, hf_tokenizer_dir):
  tok = hf_tokenizer
  ids = {t: tok.token_to_id(t) for t in QWEN_SPECIALS}
  assert all(i is not None for i in ids.values())
  assert tok.eos_id == ids["<|endoftext|>"] and tok.pad_id == tok.eos_id
  assert tok.bos_id is None
  assert tok.stop_ids == (ids["<|endoftext|>"], ids["<|im_end|>"])
  assert tok.chat_style() == "chatml"
  text = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>a</think>b<|im_end|>"
  enc = tok.encode(text)
  for special in QWEN_SPECIALS[1:]:
    assert ids[special] in enc  # special tokens written as text map to their single ids
  assert tok.decode(enc) == text
  assert tok.decode(enc, skip_special=True) == "user\nhi\nassistant\n<think>a</think>b"
  assert tok.encode("hi", add_bos=True, add_eos=True) == tok.encode("hi") + [tok.eos_id]
  assert isinstance(load_tokenizer(hf_tokenizer_dir), HFTokenizer)
  assert isinstance(load_tokenizer(os.path.join(hf_tokenizer_dir, "tokenizer.json")), HFTokenizer)


def test_hf_matches_transformers(hf_tokenizer, hf_tokenizer_dir):
  """Independent reference: transformers' fast tokenizer over the same tokenizer.json."""
  from transformers import PreTrainedTokenizerFast

  ref = PreTrainedTokenizerFast(tokenizer_file=os.path.join(hf_tokenizer_dir, "tokenizer.json"))
  for text in UNICODE_SAMPLES:
    ids = hf_tokenizer.encode(text)
    assert ids == ref.encode(text, add_special_tokens=False)
    assert hf_tokenizer.decode(ids) == ref.decode(ids)
  assert hf_tokenizer.vocab_size == len(ref)
  batch = hf_tokenizer.encode_batch(list(UNICODE_SAMPLES), add_eos=True)
  assert batch == [hf_tokenizer.encode(t, add_eos=True) for t in UNICODE_SAMPLES]


def test_hf_config_errors(hf_tokenizer_dir, tmp_path):
  import json
  import shutil

  d = tmp_path / "bad"
  d.mkdir()
  shutil.copy(os.path.join(hf_tokenizer_dir, "tokenizer.json"), d / "tokenizer.json")
  with open(d / "tokenizer_config.json", "w") as f:
    json.dump({"eos_token": "<|not_there|>"}, f)
  with pytest.raises(ValueError, match="eos_token"):
    HFTokenizer.from_dir(str(d))
  with pytest.raises(FileNotFoundError, match="tokenizer.json"):
    HFTokenizer.from_dir(str(tmp_path))
  with pytest.raises(ValueError, match="unknown tokenizer file type"):
    load_tokenizer(str(tmp_path / "x.txt"))


@pytest.mark.parametrize("backend", ["sp", "hf"])
def test_tokenizers_pickle(backend, sp_tokenizer, hf_tokenizer):
  """Multiprocess data workers receive the tokenizer by pickling."""
  import pickle

  tok = sp_tokenizer if backend == "sp" else hf_tokenizer
  clone = pickle.loads(pickle.dumps(tok))
  for text in UNICODE_SAMPLES:
    assert clone.encode(text, add_eos=True) == tok.encode(text, add_eos=True)
  assert (clone.eos_id, clone.pad_id, clone.bos_id) == (tok.eos_id, tok.pad_id, tok.bos_id)


def test_sentencepiece_vocab_too_small_is_a_clear_error():
  from r1jax.data.tokenizer import train_sentencepiece

  with pytest.raises(ValueError, match="vocab_size 200 is too small"):
    train_sentencepiece(["a b c"], vocab_size=200)
