"""Built-in chat formats (ChatML/Qwen, DeepSeek, Llama-3, plain), selectable by name.

A conversation renders to a list of `Segment`s: text plus whether the model is trained on it.
Tokenizing segment by segment lets SFT put the loss on assistant turns only (the turn-end marker
included, so the model learns to stop). The built-ins are written out here, for tokenizers that
carry no chat template (the CPU demo's) and for runs that want a fixed format:

  chatml   <|im_start|>user\\n{u}<|im_end|>\\n<|im_start|>assistant\\n{a}<|im_end|>\\n
  deepseek <｜begin▁of▁sentence｜>{system}<｜User｜>{u}<｜Assistant｜>{a}<｜end▁of▁sentence｜>
  llama3   <|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n{u}<|eot_id|>...
  plain    User: {u}\\nAssistant: {a}<eos>\\n   (for tokenizers without chat markers: the demo's)

Two more names select by tokenizer (`templates.PromptTemplate.chat_form`): "tokenizer" renders the
tokenizer's own Jinja `chat_template` (`jinja_chat.py`; an error if it has none) and "auto" does
so when it has one, else uses the built-in its marker tokens suggest (`Tokenizer.chat_style`).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

ROLES = ("system", "user", "assistant")


@dataclasses.dataclass(frozen=True)
class Segment:
  text: str
  trainable: bool = False   # loss on these tokens (assistant content and its end marker)
  append_eos: bool = False  # end the segment with the tokenizer's EOS id (formats without markers)


@dataclasses.dataclass(frozen=True)
class ChatFormat:
  name: str
  begin: str                  # text at the very start (BOS written as text), may be ""
  system: str                 # "{content}" placeholder
  user: str
  assistant_prefix: str       # opens an assistant turn (this is also the generation prompt)
  assistant_end: str          # closes an assistant turn; trainable. "" = use EOS id instead
  after_assistant: str = ""   # untrainable text after the end marker (e.g. ChatML's newline)
  uses_eos_id: bool = False   # True when the turn end is the tokenizer EOS id, not a string


CHAT_FORMATS: dict[str, ChatFormat] = {
    "chatml": ChatFormat(
        name="chatml", begin="", system="<|im_start|>system\n{content}<|im_end|>\n",
        user="<|im_start|>user\n{content}<|im_end|>\n", assistant_prefix="<|im_start|>assistant\n",
        assistant_end="<|im_end|>", after_assistant="\n"),
    "deepseek": ChatFormat(
        name="deepseek", begin="<｜begin▁of▁sentence｜>", system="{content}",
        user="<｜User｜>{content}", assistant_prefix="<｜Assistant｜>",
        assistant_end="<｜end▁of▁sentence｜>"),
    "llama3": ChatFormat(
        name="llama3", begin="<|begin_of_text|>",
        system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
        user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
        assistant_prefix="<|start_header_id|>assistant<|end_header_id|>\n\n",
        assistant_end="<|eot_id|>"),
    "plain": ChatFormat(
        name="plain", begin="", system="System: {content}\n", user="User: {content}\n",
        assistant_prefix="Assistant: ", assistant_end="", after_assistant="\n", uses_eos_id=True),
}


# Names that render with the tokenizer's own chat template (see the module docstring).
TOKENIZER_FORMATS = ("auto", "tokenizer")
CHAT_FORMAT_NAMES = (*CHAT_FORMATS, *TOKENIZER_FORMATS)


def get_chat_format(name: str) -> ChatFormat:
  if name not in CHAT_FORMATS:
    raise KeyError(f"unknown chat format {name!r}; known: {sorted(CHAT_FORMATS)}")
  return CHAT_FORMATS[name]


def validate_messages(messages: Sequence[Mapping[str, str]], where: str = "messages") -> None:
  """Raises ValueError naming the bad message: role unknown, content not a string, system late."""
  if not messages:
    raise ValueError(f"{where}: empty conversation")
  for i, m in enumerate(messages):
    if not isinstance(m, Mapping):
      raise ValueError(f"{where}[{i}]: expected an object with role and content, "
                       f"got {type(m).__name__}")
    role, content = m.get("role"), m.get("content")
    if role not in ROLES:
      raise ValueError(f"{where}[{i}].role: {role!r} is not one of {ROLES}")
    if not isinstance(content, str):
      raise ValueError(f"{where}[{i}].content: expected a string, got {type(content).__name__}")
    if role == "system" and i != 0:
      raise ValueError(f"{where}[{i}]: a system message may only come first")


def render_chat(messages: Sequence[Mapping[str, str]], fmt: str | ChatFormat = "chatml",
                add_generation_prompt: bool = False, generation_prefix: str = "") -> list[Segment]:
  """Conversation -> segments. Assistant content and its end marker are trainable.

  `add_generation_prompt` appends an open assistant turn (for sampling), followed by
  `generation_prefix` (e.g. "<think>\\n" to force reasoning, as DeepSeek recommends for R1).
  """
  f = get_chat_format(fmt) if isinstance(fmt, str) else fmt
  validate_messages(messages)
  segs: list[Segment] = [Segment(f.begin)] if f.begin else []
  for m in messages:
    role, content = m["role"], m["content"]
    if role == "system":
      segs.append(Segment(f.system.format(content=content)))
    elif role == "user":
      segs.append(Segment(f.user.format(content=content)))
    else:
      segs.append(Segment(f.assistant_prefix))
      segs.append(Segment(content + f.assistant_end, trainable=True, append_eos=f.uses_eos_id))
      if f.after_assistant:
        segs.append(Segment(f.after_assistant))
  if add_generation_prompt:
    segs.append(Segment(f.assistant_prefix + generation_prefix))
  return merge_untrainable(segs)


def chat_text(messages: Sequence[Mapping[str, str]], fmt: str | ChatFormat = "chatml",
              add_generation_prompt: bool = False, generation_prefix: str = "",
              eos_text: str = "") -> str:
  """The whole conversation as one string (EOS-id segments rendered as `eos_text`)."""
  segs = render_chat(messages, fmt, add_generation_prompt, generation_prefix)
  return "".join(s.text + (eos_text if s.append_eos else "") for s in segs)


def merge_untrainable(segs: list[Segment]) -> list[Segment]:
  """Joins neighbouring untrainable segments, so BPE sees them as one text."""
  out: list[Segment] = []
  for s in segs:
    if out and not s.trainable and not out[-1].trainable and not out[-1].append_eos:
      out[-1] = Segment(out[-1].text + s.text)
    elif s.text or s.append_eos:
      out.append(s)
  return out
