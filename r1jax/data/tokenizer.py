"""One tokenizer interface over two backends: sentencepiece and Hugging Face `tokenizer.json`.

Both backends expose the same surface (encode / decode / special ids / vocab size), so the
pipelines, the sampler and the rewards never branch on the backend:

    tok = train_sentencepiece(lines, vocab_size=1024)      # the CPU demo trains its own
    tok = load_tokenizer("/ckpt/qwen2.5-math-1.5b")        # a HF checkpoint directory
    ids = tok.encode("<think> 2+2 </think>", add_bos=True, add_eos=True)
    tok.decode(ids, skip_special=True)

The four reasoning tags (`<think>`, `</think>`, `<answer>`, `</answer>`) are single tokens in
every tokenizer trained here. They are *content* tokens, not control tokens: `skip_special=True`
keeps them, because the rewards read them in the decoded text.
"""
from __future__ import annotations

import abc
import io
import os
from typing import Iterable, Iterator, Sequence

from r1jax import fs

THINK_START, THINK_END = "<think>", "</think>"
ANSWER_START, ANSWER_END = "<answer>", "</answer>"
REASONING_TAGS: tuple[str, ...] = (THINK_START, THINK_END, ANSWER_START, ANSWER_END)

# Fallback names of the end / begin / chat-turn-end tokens of the families r1jax loads, used
# when tokenizer_config.json does not name them.
_EOS_CANDIDATES = ("<|endoftext|>", "<｜end▁of▁sentence｜>", "<|end_of_text|>", "</s>", "<|im_end|>",
                   "<|eot_id|>")
_BOS_CANDIDATES = ("<｜begin▁of▁sentence｜>", "<|begin_of_text|>", "<s>")
_TURN_END_CANDIDATES = ("<|im_end|>", "<|eot_id|>", "<｜end▁of▁sentence｜>")


class Tokenizer(abc.ABC):
  """The interface every backend implements. Ids are plain Python ints."""

  pad_id: int
  eos_id: int
  bos_id: int | None
  unk_id: int | None

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of ids the model's embedding must cover (added tokens included)."""

  @abc.abstractmethod
  def _encode(self, text: str) -> list[int]:
    """Plain encoding, no BOS/EOS."""

  @abc.abstractmethod
  def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
    """Ids -> text; `skip_special` drops control tokens (pad/bos/eos/chat markers), not the tags."""

  @abc.abstractmethod
  def token_to_id(self, token: str) -> int | None:
    """Id of a single token, or None if it is not one token of this vocabulary."""

  @abc.abstractmethod
  def id_to_token(self, token_id: int) -> str:
    """The token string of one id."""

  def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
    ids = self._encode(text)
    if add_bos and self.bos_id is not None:
      ids = [self.bos_id] + ids
    if add_eos:
      ids = ids + [self.eos_id]
    return ids

  def encode_batch(self, texts: Sequence[str], add_bos: bool = False,
                   add_eos: bool = False) -> list[list[int]]:
    return [self.encode(t, add_bos=add_bos, add_eos=add_eos) for t in texts]

  @property
  def tag_ids(self) -> dict[str, int | None]:
    """Ids of the four reasoning tags; None where a tag is not a single token."""
    return {tag: self.token_to_id(tag) for tag in REASONING_TAGS}

  @property
  def think_start_id(self) -> int | None:
    return self.token_to_id(THINK_START)

  @property
  def think_end_id(self) -> int | None:
    return self.token_to_id(THINK_END)

  @property
  def answer_start_id(self) -> int | None:
    return self.token_to_id(ANSWER_START)

  @property
  def answer_end_id(self) -> int | None:
    return self.token_to_id(ANSWER_END)

  @property
  def stop_ids(self) -> tuple[int, ...]:
    """Ids that end a generated response: EOS plus the chat turn-end token, if any."""
    ids = [self.eos_id]
    for name in _TURN_END_CANDIDATES:
      i = self.token_to_id(name)
      if i is not None and i not in ids and self.is_special(i):
        ids.append(i)
    return tuple(ids)

  def sampling_stop_ids(self, stop_at_answer_end: bool = False) -> tuple[int, ...]:
    """The stop ids of every sampling path (RL rollouts, evaluation, rejection sampling): `stop_ids`,
    plus `</answer>` when the format ends there (an error if that is not one token here)."""
    if not stop_at_answer_end:
      return self.stop_ids
    if self.answer_end_id is None:
      raise ValueError(f"sampling.stop_at_answer_end is set but the tokenizer has no single {ANSWER_END!r} "
                       "token; set sampling.stop_at_answer_end=False")
    return self.stop_ids + (self.answer_end_id,)

  @abc.abstractmethod
  def is_special(self, token_id: int) -> bool:
    """True for control tokens (dropped by `decode(skip_special=True)`)."""

  def chat_style(self) -> str:
    """The built-in chat format of this vocabulary (`chat.py`), guessed from its marker tokens."""
    if self.token_to_id("<|im_start|>") is not None:
      return "chatml"
    if self.token_to_id("<｜User｜>") is not None:
      return "deepseek"
    if self.token_to_id("<|start_header_id|>") is not None:
      return "llama3"
    return "plain"


# ---------------------------------------------------------------------------------------------
# sentencepiece
# ---------------------------------------------------------------------------------------------


class SentencePieceTokenizer(Tokenizer):
  """A sentencepiece `.model` (ids 0..3 = pad/unk/bos/eos when made by `train_sentencepiece`)."""

  def __init__(self, model_proto: bytes):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    self.model_proto = bytes(model_proto)
    self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(self.model_proto)
    # With a dummy prefix the decoder strips one leading space; decoding in runs must undo it.
    self._dummy_prefix = bool(proto.normalizer_spec.add_dummy_prefix)
    self.unk_id = _none_if_negative(self._sp.unk_id())
    bos = _none_if_negative(self._sp.bos_id())
    eos = _none_if_negative(self._sp.eos_id())
    if eos is None:
      raise ValueError("sentencepiece model has no EOS id (train with eos_id >= 0)")
    self.bos_id, self.eos_id = bos, eos
    pad = _none_if_negative(self._sp.pad_id())
    self.pad_id = pad if pad is not None else eos

  def __reduce__(self):  # picklable (Grain multiprocess workers): rebuild from the proto
    return (SentencePieceTokenizer, (self.model_proto,))

  @classmethod
  def from_file(cls, path: str | os.PathLike) -> "SentencePieceTokenizer":
    return cls(fs.read_bytes(path))

  def save(self, path: str | os.PathLike) -> None:
    fs.write_bytes(path, self.model_proto)

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  def _encode(self, text: str) -> list[int]:
    return list(self._sp.encode(text, out_type=int))

  def encode_batch(self, texts: Sequence[str], add_bos: bool = False,
                   add_eos: bool = False) -> list[list[int]]:
    # sentencepiece batches in C++, so this is much faster than a Python loop.
    out = self._sp.encode(list(texts), out_type=int, add_bos=add_bos and self.bos_id is not None,
                          add_eos=add_eos)
    return [list(x) for x in out]

  def is_special(self, token_id: int) -> bool:
    return bool(self._sp.is_control(token_id))

  def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
    ids = [int(i) for i in ids]
    if skip_special:
      return self._sp.decode([i for i in ids if not self._sp.is_control(i)])
    # sentencepiece always drops control pieces; render them by name, decoding the runs between.
    parts, run = [], []
    for i in ids:
      if self._sp.is_control(i):
        if run:
          parts.append(self._decode_run(run, first=not parts))
          run = []
        parts.append(self._sp.id_to_piece(i))
      else:
        run.append(i)
    if run:
      parts.append(self._decode_run(run, first=not parts))
    return "".join(parts)

  def _decode_run(self, run: list[int], first: bool) -> str:
    text = self._sp.decode(run)
    if self._dummy_prefix and not first and self._sp.id_to_piece(run[0]).startswith("▁"):
      text = " " + text
    return text

  def token_to_id(self, token: str) -> int | None:
    i = self._sp.piece_to_id(token)
    if i == self.unk_id and token != self._sp.id_to_piece(i):
      return None
    return int(i)

  def id_to_token(self, token_id: int) -> str:
    return self._sp.id_to_piece(int(token_id))


def _none_if_negative(i: int) -> int | None:
  return None if i < 0 else int(i)


def train_sentencepiece(lines: Iterable[str], vocab_size: int = 1024, model_type: str = "bpe",
                        extra_symbols: Sequence[str] = (), num_threads: int = 2,
                        max_sentence_length: int = 16384) -> SentencePieceTokenizer:
  """Trains a sentencepiece model in-process (no files) with the reasoning tags as single tokens.

  Exact round trips: identity normalisation, whitespace kept, no dummy prefix, byte fallback for
  characters the corpus lacks, digits split one per token (helps arithmetic).
  `vocab_size` is an upper bound: a small corpus yields fewer pieces instead of an error. It must
  cover the 256 byte pieces, the specials and every distinct character of the corpus.
  """
  import sentencepiece as spm

  symbols = list(REASONING_TAGS) + [s for s in extra_symbols if s not in REASONING_TAGS]
  floor = 256 + 4 + len(symbols)
  if vocab_size <= floor:
    raise ValueError(f"vocab_size {vocab_size} is too small: byte fallback alone needs {floor} "
                     "ids plus one per distinct character of the corpus")
  buf = io.BytesIO()
  # sentencepiece splits its input on newlines; feed each line of multi-line texts separately.
  it: Iterator[str] = (piece for line in lines for piece in line.split("\n") if piece)
  spm.SentencePieceTrainer.train(
      sentence_iterator=it, model_writer=buf, vocab_size=vocab_size, model_type=model_type,
      user_defined_symbols=symbols, character_coverage=1.0, byte_fallback=True, split_digits=True,
      pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=num_threads, minloglevel=2,
      hard_vocab_limit=False, normalization_rule_name="identity", remove_extra_whitespaces=False,
      add_dummy_prefix=False, allow_whitespace_only_pieces=True,
      max_sentence_length=max_sentence_length, train_extremely_large_corpus=False)
  return SentencePieceTokenizer(buf.getvalue())


# ---------------------------------------------------------------------------------------------
# Hugging Face tokenizer.json
# ---------------------------------------------------------------------------------------------


class HFTokenizer(Tokenizer):
  """A `tokenizers.Tokenizer` (Qwen / DeepSeek / Llama `tokenizer.json`) plus its config's names.

  `config` is the parsed `tokenizer_config.json` (optional): its `bos_token`, `eos_token` and
  `pad_token` are used when present. `chat_template` is the Jinja chat template (`jinja_chat.py`
  renders it): the one given, else the config's (its "default" entry when it holds several);
  `chat_template_origin` says where it was read, for errors.
  """

  def __init__(self, tokenizer, config: dict | None = None, chat_template: str | None = None,
               chat_template_origin: str = "tokenizer_config.json"):
    self._tok = tokenizer
    self.config = dict(config or {})
    if chat_template is None:
      chat_template = _config_chat_template(self.config.get("chat_template"), chat_template_origin)
    self.chat_template: str | None = chat_template or None
    self.chat_template_origin = chat_template_origin
    self._special = {int(i) for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    eos = _first_not_none(self._named_id("eos_token"), self._first_present(_EOS_CANDIDATES))
    if eos is None:
      raise ValueError("HF tokenizer: no EOS token (set eos_token in tokenizer_config.json)")
    self.eos_id = eos
    self.bos_id = _first_not_none(self._named_id("bos_token"),
                                  self._first_present(_BOS_CANDIDATES))
    pad = self._named_id("pad_token")
    self.pad_id = pad if pad is not None else eos
    self.unk_id = self._named_id("unk_token")

  def __reduce__(self):  # picklable (Grain multiprocess workers): rebuild from the JSON
    return (_hf_from_str, (self._tok.to_str(), self.config, self.chat_template,
                           self.chat_template_origin))

  @classmethod
  def from_file(cls, tokenizer_json: str | os.PathLike,
                config_json: str | os.PathLike | None = None) -> "HFTokenizer":
    """`config_json` and, beside it, `chat_template.jinja` (which wins over the config's template,
    as transformers >= 4.43 saves it) are read when they exist."""
    from tokenizers import Tokenizer as RawTokenizer

    config, template, origin = None, None, "tokenizer_config.json"
    if config_json is not None:
      origin = f"{os.fspath(config_json)}: chat_template"
      if fs.exists(config_json):
        config = fs.read_json(config_json)
      jinja = fs.join(os.fspath(fs.path(config_json).parent), "chat_template.jinja")
      if fs.exists(jinja):
        template, origin = fs.read_text(jinja), jinja
    return cls(RawTokenizer.from_str(fs.read_text(tokenizer_json)), config, template, origin)

  @classmethod
  def from_dir(cls, directory: str | os.PathLike) -> "HFTokenizer":
    path = fs.join(directory, "tokenizer.json")
    if not fs.exists(path):
      raise FileNotFoundError(f"{path}: no tokenizer.json in the checkpoint directory")
    return cls.from_file(path, fs.join(directory, "tokenizer_config.json"))

  def _named_id(self, key: str) -> int | None:
    value = self.config.get(key)
    if isinstance(value, dict):  # {"content": "<|endoftext|>", ...}
      value = value.get("content")
    if not value:
      return None
    i = self._tok.token_to_id(value)
    if i is None:
      raise ValueError(f"tokenizer_config.json: {key}={value!r} is not a token of tokenizer.json")
    return int(i)

  def _first_present(self, names: Sequence[str]) -> int | None:
    for name in names:
      i = self._tok.token_to_id(name)
      if i is not None:
        return int(i)
    return None

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  def _encode(self, text: str) -> list[int]:
    return list(self._tok.encode(text, add_special_tokens=False).ids)

  def encode_batch(self, texts: Sequence[str], add_bos: bool = False,
                   add_eos: bool = False) -> list[list[int]]:
    encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
    bos = [self.bos_id] if add_bos and self.bos_id is not None else []
    eos = [self.eos_id] if add_eos else []
    return [bos + list(e.ids) + eos for e in encs]

  def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special)

  def is_special(self, token_id: int) -> bool:
    return int(token_id) in self._special

  def token_to_id(self, token: str) -> int | None:
    i = self._tok.token_to_id(token)
    return None if i is None else int(i)

  def id_to_token(self, token_id: int) -> str:
    return self._tok.id_to_token(int(token_id))



def _hf_from_str(json_str: str, config: dict, chat_template: str | None,
                 chat_template_origin: str) -> HFTokenizer:
  from tokenizers import Tokenizer as RawTokenizer

  return HFTokenizer(RawTokenizer.from_str(json_str), config, chat_template, chat_template_origin)


def _config_chat_template(value, origin: str) -> str | None:
  """tokenizer_config.json's `chat_template`: one string, or a list of {"name", "template"}
  entries of which "default" is the chat template."""
  if value is None or isinstance(value, str):
    return value
  if isinstance(value, list) and all(isinstance(t, dict) and {"name", "template"} <= t.keys() for t in value):
    named = {t["name"]: t["template"] for t in value}
    if "default" not in named:
      raise ValueError(f"{origin}: several chat templates {sorted(named)} and none named 'default'")
    return named["default"]
  raise ValueError(f"{origin}: expected a string or a list of {{'name', 'template'}} entries, "
                   f"got {type(value).__name__}")


def _first_not_none(*values):
  return next((v for v in values if v is not None), None)


# What a checkpoint directory carries of its tokenizer: an HF tokenizer (its config holds the
# special tokens and the chat template) or a sentencepiece model.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model")


def has_tokenizer(directory: str | os.PathLike) -> bool:
  return any(fs.exists(fs.join(directory, f)) for f in ("tokenizer.json", "tokenizer.model"))


def copy_tokenizer_files(source: str | os.PathLike, directory: str | os.PathLike) -> list[str]:
  """Copies the tokenizer at `source` (what `load_tokenizer` takes: a directory holding one, a
  tokenizer.json with its sibling config files, or a sentencepiece .model) into `directory`, so
  that directory loads on its own; returns the file names written."""
  source = os.fspath(source)
  if fs.isdir(source):
    if not has_tokenizer(source):
      raise FileNotFoundError(f"{source}: no tokenizer.json or tokenizer.model inside")
    copies = {fs.join(source, f): f for f in TOKENIZER_FILES}
  elif source.endswith(".model"):
    copies = {source: "tokenizer.model"}
  elif source.endswith(".json"):
    siblings = os.fspath(fs.path(source).parent)
    copies = {source: "tokenizer.json", **{fs.join(siblings, f): f for f in TOKENIZER_FILES[1:-1]}}
  else:
    raise ValueError(f"{source}: not a tokenizer (.model, tokenizer.json or a directory holding one)")
  written = []
  for src, name in copies.items():
    if src == source or fs.exists(src):  # the named file itself must exist: fs.copy says so if not
      fs.copy(src, fs.join(directory, name))
      written.append(name)
  return written


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
  """A `.model` file -> sentencepiece; a `tokenizer.json` or a directory holding one -> HF."""
  path = os.fspath(path)
  if fs.isdir(path):
    if fs.exists(fs.join(path, "tokenizer.json")):
      return HFTokenizer.from_dir(path)
    model = fs.join(path, "tokenizer.model")
    if fs.exists(model):
      return SentencePieceTokenizer.from_file(model)
    raise FileNotFoundError(f"{path}: neither tokenizer.json nor tokenizer.model inside")
  if path.endswith(".json"):
    return HFTokenizer.from_file(path, os.fspath(fs.path(path).parent / "tokenizer_config.json"))
  if path.endswith(".model"):
    return SentencePieceTokenizer.from_file(path)
  raise ValueError(f"{path}: unknown tokenizer file type (expected .model, tokenizer.json or "
                   "a directory)")
