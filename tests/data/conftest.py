"""Fixtures for the data tests: tokenizers trained in-process (no downloads)."""
import json
import os

import pytest

from r1jax.data import templates
from r1jax.data.tokenizer import HFTokenizer, REASONING_TAGS, train_sentencepiece

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

UNICODE_SAMPLES = (
    "plain ascii text",
    "digits 0123456789 and 3.14159, -42, 1e10",
    "<think> reason here </think> <answer> 42 </answer>",
    "<think>\nmulti\nline\n</think>\n\n<answer>x</answer>",
    "Ünïcödé: café, naïve, Ærøskøbing, straße",
    "中文推理：先计算 12 × 7 = 84。",
    "emoji 🙂🚀 and symbols ✓ ≤ ∑ ÷ ×",
    "  leading and   multiple spaces, trailing  ",
    "tabs\tand\nnewlines\r\n",
    "",
)


def corpus_lines(n: int = 400) -> list[str]:
  lines = [templates.R1_ZERO_TEMPLATE.replace("{prompt}", "What is 1 + 2?")]
  for i in range(n):
    lines.append(f"What is {i} + {3 * i}? <think> {i} plus {3 * i} is {4 * i} </think> "
                 f"<answer> {4 * i} </answer>")
    lines.append(f"User: rewrite the words apple river stone. Assistant: APPLE RIVER STONE {i}")
  return lines


@pytest.fixture(scope="session")
def sp_tokenizer():
  return train_sentencepiece(corpus_lines(), vocab_size=512)


@pytest.fixture(scope="session")
def hf_tokenizer_dir(tmp_path_factory):
  """A small byte-level BPE with Qwen-like special tokens, saved as tokenizer.json + config."""
  from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=list(QWEN_SPECIALS),
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tok.train_from_iterator(corpus_lines(), trainer=trainer)
  # The tags are ordinary (non-special) added tokens, as in DeepSeek-R1 distills / Qwen3.
  tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TAGS])
  d = tmp_path_factory.mktemp("hf_tok")
  tok.save(str(d / "tokenizer.json"))
  with open(d / "tokenizer_config.json", "w") as f:
    json.dump({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "bos_token": None}, f)
  return str(d)


@pytest.fixture(scope="session")
def hf_tokenizer(hf_tokenizer_dir):
  return HFTokenizer.from_dir(hf_tokenizer_dir)


@pytest.fixture
def write_lines(tmp_path):
  """Writes raw byte lines to a file; returns its path."""

  def write(name: str, lines: list[bytes]) -> str:
    path = os.path.join(tmp_path, name)
    with open(path, "wb") as f:
      for line in lines:
        f.write(line + b"\n")
    return path

  return write
