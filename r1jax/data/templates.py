"""Prompt templates: the R1-Zero template (paper Table 1), the R1 readable format, chat form.

- `r1_zero`: Table 1 of DeepSeek-R1 (arXiv 2501.12948), verbatim, with the problem substituted
  for "prompt". The response continues after "Assistant:" with `<think> … </think> <answer> …
  </answer>`.
- `r1`: the cold-start format of §2.3.1, reasoning then a readable summary,
  `<think>\\n{reasoning}\\n</think>\\n\\n{summary}`, in chat form. The summary ends with the
  final answer in `<answer>…</answer>` so the same rule-based verifiers grade both stages.
- `chat`: instruction data (no reasoning), in chat form.
- `raw`: the prompt text as is (pretraining text, pre-formatted data).

The chat form is `chat_format`: a built-in of `chat.py` (chatml, deepseek, llama3, plain) by name,
or the tokenizer's own Jinja chat template (`jinja_chat.py`) with "tokenizer" (an error when the
tokenizer has none) or "auto" (the template when the tokenizer has one, else the built-in its
marker tokens suggest). The template needs the tokenizer, so the methods below take it; the
encoders of `encode.py` pass it.

Zero-shot by default: the paper reports that few-shot prompting degrades R1. Shots can be given in
config (`template.shots = [{"prompt": …, "response": …}, …]`); they are rendered as earlier turns.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from r1jax.data import chat
from r1jax.data.chat import Segment
from r1jax.data.jinja_chat import JinjaChat
from r1jax.data.tokenizer import Tokenizer

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. User: {prompt}. Assistant:")

TEMPLATE_NAMES = ("r1_zero", "r1", "chat", "raw")


def r1_zero_prompt(problem: str) -> str:
  """Table 1 with the problem substituted (the only change to the paper's text)."""
  return R1_ZERO_TEMPLATE.replace("{prompt}", problem)


def r1_zero_response(reasoning: str, answer: str) -> str:
  """An R1-Zero-format completion (what follows "Assistant:")."""
  return f" <think> {reasoning} </think> <answer> {answer} </answer>"


def r1_response(reasoning: str, summary: str, answer: str | None = None) -> str:
  """The R1 readable format: reasoning in <think>, then a summary for the user (§2.3.1)."""
  tail = f" <answer>{answer}</answer>" if answer is not None else ""
  return f"<think>\n{reasoning}\n</think>\n\n{summary}{tail}"


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
  """Turns a problem (or a conversation) into model text; one object per training stage."""

  name: str = "r1_zero"
  chat_format: str = "plain"              # chat.CHAT_FORMAT_NAMES, for the r1 / chat templates
  system: str | None = None               # optional system message (chat forms)
  generation_prefix: str = ""             # forced start of the answer, e.g. "<think>\n"
  shots: tuple[tuple[str, str], ...] = ()  # (prompt, response) few-shot examples

  def __post_init__(self):
    if self.name not in TEMPLATE_NAMES:
      raise ValueError(f"template.name: {self.name!r} is not one of {TEMPLATE_NAMES}")
    if self.chat_format not in chat.CHAT_FORMAT_NAMES:
      raise KeyError(f"unknown chat format {self.chat_format!r}; known: {sorted(chat.CHAT_FORMAT_NAMES)}")

  # --- the chat form ---------------------------------------------------------------------------
  def chat_form(self, tokenizer: Tokenizer | None = None) -> chat.ChatFormat | JinjaChat:
    """The chat form `chat_format` selects (see the module docstring) for `tokenizer`."""
    if self.chat_format not in chat.TOKENIZER_FORMATS:
      return chat.get_chat_format(self.chat_format)
    if tokenizer is None:
      raise ValueError(f"template.chat_format={self.chat_format!r} renders with the tokenizer's chat "
                       "template: pass the tokenizer")
    if getattr(tokenizer, "chat_template", None):
      return JinjaChat.of(tokenizer)
    if self.chat_format == "tokenizer":
      raise ValueError("template.chat_format='tokenizer': the tokenizer has no chat_template (neither "
                       "tokenizer_config.json nor chat_template.jinja holds one); use 'auto' to fall back "
                       f"to a built-in, or name one of {sorted(chat.CHAT_FORMATS)}")
    return chat.get_chat_format(tokenizer.chat_style())

  def writes_bos(self, tokenizer: Tokenizer | None = None) -> bool:
    """True when the tokenizer's chat template renders the text: it writes its BOS (or none) itself,
    and the ids are its text tokenized as is (transformers' `apply_chat_template` ids)."""
    return self.name in ("r1", "chat") and isinstance(self.chat_form(tokenizer), JinjaChat)

  # --- prompts for sampling --------------------------------------------------------------------
  def prompt_text(self, problem: str, tokenizer: Tokenizer | None = None) -> str:
    """The text a policy continues from (RL rollouts, evaluation)."""
    return "".join(s.text for s in self.prompt_segments(problem, tokenizer))

  def prompt_segments(self, problem: str, tokenizer: Tokenizer | None = None) -> list[Segment]:
    if self.name == "raw":
      return [Segment(problem + self.generation_prefix)]
    if self.name == "r1_zero":
      text = r1_zero_prompt(problem)
      if self.shots:
        head, tail = text.split("User: ", 1)
        demos = "".join(f"User: {p}. Assistant:{_lead_space(r)}\n" for p, r in self.shots)
        text = head + demos + "User: " + tail
      return [Segment(text + self.generation_prefix)]
    form = self.chat_form(tokenizer)
    if isinstance(form, JinjaChat):
      return [Segment(form.prompt(self._messages(problem, None)) + self.generation_prefix)]
    return chat.render_chat(self._messages(problem, None), form,
                            add_generation_prompt=True, generation_prefix=self.generation_prefix)

  # --- SFT examples ----------------------------------------------------------------------------
  def sft_segments(self, problem: str, response: str, tokenizer: Tokenizer | None = None) -> list[Segment]:
    """Prompt (no loss) + response (loss, ends with the turn end / EOS).

    The prompt part is exactly `prompt_segments(problem)`, generation prefix included (it is
    taken off the response when the response starts with it), so the ids an SFT row or a reward
    model reads begin with the very ids the policy is sampled from.
    """
    prefix = self.generation_prefix
    body = response[len(prefix):] if prefix and response.startswith(prefix) else response
    prompt = self.prompt_segments(problem, tokenizer)
    if self.name == "raw":
      return prompt + [Segment(body, trainable=True, append_eos=True)]
    if self.name == "r1_zero":
      return prompt + [Segment(_lead_space(body), trainable=True, append_eos=True)]
    form = self.chat_form(tokenizer)
    if isinstance(form, JinjaChat):
      # The template renders the whole answer (prefix + body); the prefix is already in the prompt.
      _, trainable, after = form.assistant_turn(self._messages(problem, None), prefix + body)
      if not trainable.startswith(prefix):
        raise ValueError(f"{form.origin}: the chat template renders the assistant content "
                         f"{trainable[:40]!r}, which does not start with template.generation_prefix {prefix!r}")
      tail = [Segment(trainable[len(prefix):], trainable=True)]
      return prompt + tail + ([Segment(after)] if after else [])
    tail = [Segment(body + form.assistant_end, trainable=True, append_eos=form.uses_eos_id)]
    if form.after_assistant:
      tail.append(Segment(form.after_assistant))
    return prompt + tail

  def chat_segments(self, messages: Sequence[Mapping[str, str]],
                    tokenizer: Tokenizer | None = None) -> list[Segment]:
    """A whole conversation (instruction data) in this template's chat form."""
    msgs = list(messages)
    if self.system is not None and msgs and msgs[0].get("role") != "system":
      msgs = [{"role": "system", "content": self.system}] + msgs
    form = self.chat_form(tokenizer)
    if isinstance(form, JinjaChat):
      return form.segments(msgs)
    return chat.render_chat(msgs, form)

  def _messages(self, problem: str, response: str | None) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    if self.system is not None:
      msgs.append({"role": "system", "content": self.system})
    for p, r in self.shots:
      msgs += [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
    msgs.append({"role": "user", "content": problem})
    if response is not None:
      msgs.append({"role": "assistant", "content": response})
    return msgs


def _lead_space(text: str) -> str:
  """R1-Zero completions follow "Assistant:" after one space."""
  return text if text.startswith((" ", "\n")) else " " + text


def build_template(config: Mapping[str, Any] | Any | None = None) -> PromptTemplate:
  """From a config mapping (or ConfigDict): name, chat_format, system, generation_prefix, shots.

  An empty `system` (what a config holds when none is set) means no system message.
  """
  if config is None:
    return PromptTemplate()
  get = config.get if hasattr(config, "get") else (lambda k, d=None: getattr(config, k, d))
  shots_cfg = get("shots", None) or ()
  shots = []
  for i, s in enumerate(shots_cfg):
    if not (hasattr(s, "get") and isinstance(s.get("prompt"), str)
            and isinstance(s.get("response"), str)):
      raise ValueError(f"template.shots[{i}]: expected {{'prompt': str, 'response': str}}")
    shots.append((s.get("prompt"), s.get("response")))
  return PromptTemplate(
      name=get("name", "r1_zero"), chat_format=get("chat_format", "plain"),
      system=get("system", None) or None, generation_prefix=get("generation_prefix", "") or "",
      shots=tuple(shots))
