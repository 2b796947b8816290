"""The tokenizer's own Jinja `chat_template`, rendered as transformers renders it, cut into segments.

Real checkpoints ship their chat format as a Jinja template (`tokenizer_config.json`'s
`chat_template` or `chat_template.jinja`), and templates drift from any hand-written copy: the
R1 distills' generation prompt opens `<think>\\n`, Qwen2.5 adds a default system message, Llama 3.1
writes today's date. So when `data.template.chat_format` is "tokenizer" (or "auto" and the
tokenizer has a template; `templates.PromptTemplate.chat_form` decides), prompts are rendered here:

  - a sandboxed environment with `trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension,
    `raise_exception`, `strftime_now`, and `tojson` as transformers defines it (no HTML escaping,
    non-ASCII kept); `{% generation %}` blocks render their body unchanged;
  - variables `messages`, `add_generation_prompt`, `tools=None`, `documents=None`, and every named
    special token of tokenizer_config.json (`bos_token`, `eos_token`, ... any `*_token` key and
    the named `extra_special_tokens`);
  - the text is tokenized as is (the template writes its BOS as text, or none), so the ids are
    transformers' `apply_chat_template(..., tokenize=True)`: no BOS is added on top.

SFT needs to know which tokens are the assistant's. They come from renderings of prefixes of the
conversation: for an assistant message i, P = render(messages[:i], add_generation_prompt=True) and
F = render(messages[:i + 1]); F must start with P, and P with the rendering of everything before
it. The assistant span is F[len(P):] up to and including its first stop token (EOS or a turn end,
`Tokenizer.stop_ids`: what the sampler stops at, so the model learns to stop); what follows (e.g.
ChatML's newline) is not trained on. A template that rewrites earlier turns (strips reasoning from
the history) or whose generation prompt differs from the history's assistant header (the R1
distills' `<think>\\n`) renders no such prefix chain; that is an error naming the template, and
such a tokenizer can still sample (prompts need only P) or train under a built-in format.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import json
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.ext
import jinja2.sandbox

from r1jax.data.chat import Segment, merge_untrainable, validate_messages


class _GenerationBlock(jinja2.ext.Extension):
  """transformers' `{% generation %}...{% endgeneration %}` (its assistant-mask marker): parsed so
  templates that use it render; the body renders unchanged (masks here come from prefixes)."""

  tags = {"generation"}

  def parse(self, parser):
    next(parser.stream)
    return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str):
  raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
  # Jinja's own tojson escapes HTML characters; chat templates expect plain JSON.
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
  return datetime.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
  env = jinja2.sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols])
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise_exception
  env.globals["strftime_now"] = _strftime_now
  return env


@functools.lru_cache(maxsize=16)
def _compiled(source: str) -> jinja2.Template:
  return _environment().from_string(source)


def compile_template(source: str, origin: str) -> jinja2.Template:
  """The compiled template (cached by its text); a syntax error names `origin` and the line."""
  try:
    return _compiled(source)
  except jinja2.TemplateSyntaxError as e:
    raise ValueError(f"{origin}: line {e.lineno}: chat template does not parse: {e.message}") from e


def special_token_variables(config: Mapping[str, Any]) -> dict[str, str]:
  """The named special tokens tokenizer_config.json gives a template: every `*_token` key with a
  string (or {"content": ...}) value, and the named entries of `extra_special_tokens`."""
  named = {k: v for k, v in config.items() if k.endswith("_token")}
  extra = config.get("extra_special_tokens")
  if isinstance(extra, Mapping):
    named.update(extra)
  out = {}
  for key, value in named.items():
    if isinstance(value, Mapping):
      value = value.get("content")
    if isinstance(value, str):
      out[key] = value
  return out


@dataclasses.dataclass(frozen=True)
class JinjaChat:
  """One tokenizer's chat template with what it renders with."""

  source: str                             # the Jinja text
  origin: str                             # where it was read (named in every error)
  variables: tuple[tuple[str, str], ...]  # special tokens: (("bos_token", "<s>"), ...)
  end_markers: tuple[str, ...]            # texts of the stop tokens that may close an assistant turn

  @classmethod
  def of(cls, tokenizer) -> "JinjaChat":
    """From an `HFTokenizer` that has a `chat_template`."""
    if not getattr(tokenizer, "chat_template", None):
      raise ValueError("the tokenizer has no chat_template (tokenizer_config.json or chat_template.jinja)")
    variables = special_token_variables(tokenizer.config)
    markers = tuple(tokenizer.id_to_token(i) for i in tokenizer.stop_ids)
    return cls(tokenizer.chat_template, tokenizer.chat_template_origin, tuple(sorted(variables.items())),
               markers)

  def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False) -> str:
    template = compile_template(self.source, self.origin)
    # Fresh plain dicts (a template cannot touch the caller's), None values dropped as transformers does.
    msgs = [{k: v for k, v in m.items() if v is not None} for m in messages]
    try:
      return template.render(messages=msgs, add_generation_prompt=add_generation_prompt, tools=None,
                             documents=None, **dict(self.variables))
    except jinja2.TemplateError as e:
      raise ValueError(f"{self.origin}: chat template failed on {len(msgs)} message(s) "
                       f"(add_generation_prompt={add_generation_prompt}): {e}") from e

  def prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
    """The text a policy continues from: `messages` and the generation prompt."""
    validate_messages(messages)
    return self._prompt(messages)

  def _prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
    text = self.render(messages, add_generation_prompt=True)
    if text == self.render(messages):
      raise ValueError(f"{self.origin}: the chat template renders no generation prompt "
                       "(add_generation_prompt changes nothing), so a policy would not know to answer")
    return text

  def assistant_turn(self, history: Sequence[Mapping[str, str]], content: str) -> tuple[str, str, str]:
    """(prompt, trainable, after): `history` + generation prompt, then the assistant's `content`
    up to and including its stop token, then the rest of the turn's rendering (not trained on)."""
    prompt = self._prompt(history)
    full = self.render(list(history) + [{"role": "assistant", "content": content}])
    self._check_prefix(prompt, full, f"messages[:{len(history)}] with the generation prompt",
                       f"messages[:{len(history) + 1}] (ending with the assistant message)")
    span = full[len(prompt):]
    start = len(content) if span.startswith(content) else 0  # a marker-like string inside content is no end
    hits = [(i, m) for m in self.end_markers if (i := span.find(m, start)) >= 0]
    if not hits:
      raise ValueError(f"{self.origin}: the assistant turn renders as {_clip(span)!r}, with no stop token "
                       f"{list(self.end_markers)} after its content: a policy trained on it would never stop")
    pos, marker = min(hits)
    end = pos + len(marker)
    return prompt, span[:end], span[end:]

  def segments(self, messages: Sequence[Mapping[str, str]]) -> list[Segment]:
    """A whole conversation; each assistant message's content and stop token are trainable."""
    validate_messages(messages)
    segs: list[Segment] = []
    done = ""  # the text segmented so far: always a prefix of every later rendering
    for i, m in enumerate(messages):
      if m["role"] != "assistant":
        continue
      prompt, trainable, after = self.assistant_turn(messages[:i], m["content"])
      self._check_prefix(done, prompt, f"messages[:{_last_end(messages, i)}]",
                         f"messages[:{i}] with the generation prompt")
      segs += [Segment(prompt[len(done):]), Segment(trainable, trainable=True), Segment(after)]
      done = prompt + trainable + after
    full = self.render(messages)
    self._check_prefix(done, full, f"messages[:{_last_end(messages, len(messages))}]", "the whole conversation")
    segs.append(Segment(full[len(done):]))
    return merge_untrainable(segs)

  def _check_prefix(self, head: str, text: str, head_name: str, text_name: str) -> None:
    if text.startswith(head):
      return
    at = next((i for i, (a, b) in enumerate(zip(head, text)) if a != b), min(len(head), len(text)))
    raise ValueError(
        f"{self.origin}: the chat template's rendering of {head_name} is not a prefix of its rendering of "
        f"{text_name} (they part at character {at}: {_clip(head[at:])!r} vs {_clip(text[at:])!r}), so the "
        "assistant tokens cannot be marked for SFT. Templates that rewrite earlier turns (e.g. strip the "
        "reasoning from the history) or whose generation prompt differs from the history's assistant header do "
        "this; train with a built-in data.template.chat_format (chatml, deepseek, llama3, plain) instead")


def _last_end(messages: Sequence[Mapping[str, str]], i: int) -> int:
  """One past the last assistant message before index i (0 if none): what `done` covers."""
  return max((j + 1 for j in range(i) if messages[j]["role"] == "assistant"), default=0)


def _clip(text: str, n: int = 40) -> str:
  return text if len(text) <= n else text[:n] + "..."
