"""A tokenizer's own Jinja chat template, against transformers' `apply_chat_template`.

Tokenizers are built here (a tiny byte-level BPE, each family's special tokens added), wrapped in
`transformers.PreTrainedTokenizerFast` with a chat template written below and saved with
`save_pretrained` (so the template travels as chat_template.jinja); r1jax loads the directory, and
transformers loads it again as the reference.
"""
import pickle

import pytest

from r1jax.data import chat, encode
from r1jax.data.jinja_chat import JinjaChat
from r1jax.data.templates import PromptTemplate
from r1jax.data.tokenizer import REASONING_TAGS, HFTokenizer, load_tokenizer

# Qwen2-style ChatML: a default system message; the assistant part in transformers' generation tags,
# so transformers' own assistant mask is a reference for ours.
CHATML = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# DeepSeek-R1-distill-style: BOS as text, the system prompt first, reasoning stripped from assistant
# turns, and a generation prompt that opens the reasoning.
R1_DISTILL = (
    "{% set ns = namespace(system='') %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}{% endif %}{% endfor %}"
    "{{ bos_token }}{{ ns.system }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{% set content = m['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}")
# Llama-3-style: BOS before the first header, contents trimmed, a dated system header, a role check.
LLAMA3 = (
    "{{ bos_token }}{{ '<|start_header_id|>system<|end_header_id|>\\n\\nYear: ' + strftime_now('%Y') }}"
    "{% if messages[0]['role'] == 'system' %}{{ '\\n' + messages[0]['content'] | trim }}{% endif %}"
    "{{ '<|eot_id|>' }}"
    "{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role ' + m['role']) }}"
    "{% elif m['role'] != 'system' %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

FAMILIES = {
    "chatml": dict(specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"), eos="<|endoftext|>", bos=None,
                   end="<|im_end|>", template=CHATML),
    "r1_distill": dict(specials=("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"),
                       eos="<｜end▁of▁sentence｜>", bos="<｜begin▁of▁sentence｜>", end="<｜end▁of▁sentence｜>",
                       template=R1_DISTILL),
    "llama3": dict(specials=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                             "<|eot_id|>"), eos="<|eot_id|>", bos="<|begin_of_text|>", end="<|eot_id|>",
                   template=LLAMA3),
}
# Qwen3-style history rewriting: the reasoning of all but the last assistant turn is dropped.
STRIPS_HISTORY = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{% set c = m['content'] %}"
    "{% if not loop.last and '</think>' in c %}{% set c = c.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
    "{{ '<|im_start|>assistant\\n' + c + '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SFT_FAMILIES = ("chatml", "llama3")  # the R1-distill template rewrites assistant turns (tested below)

CONVERSATION = [
    {"role": "system", "content": "Answer with one number."},
    {"role": "user", "content": "What is 17 + 25?"},
    {"role": "assistant", "content": "<think>\n17 + 25 = 42\n</think>\n\nThe sum is 42."},
    {"role": "user", "content": "And 38 + 46, café?"},
    {"role": "assistant", "content": "It is 84 🙂"},
]
PROMPTS = [CONVERSATION[1:2], CONVERSATION[:2], CONVERSATION[:4]]


def _corpus():
  words = "what is the sum answer and one number with it café 🙂 think reasoning plus system user assistant"
  return [f"{words} {i} + {3 * i} = {4 * i}" for i in range(200)]


@pytest.fixture(scope="module")
def base_bpe():
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tok.train_from_iterator(_corpus(), trainer=trainer)
  return tok.to_str()


def _save(base_json, directory, family, template):
  """A family's tokenizer saved by transformers (chat_template.jinja when `template` is set)."""
  from tokenizers import AddedToken, Tokenizer
  from transformers import PreTrainedTokenizerFast

  f = FAMILIES[family]
  tok = Tokenizer.from_str(base_json)
  tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in f["specials"]])
  tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TAGS])
  ref = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=f["eos"], bos_token=f["bos"],
                                pad_token=f["eos"], chat_template=template)
  ref.save_pretrained(str(directory))
  return str(directory)


@pytest.fixture(scope="module")
def family_dirs(base_bpe, tmp_path_factory):
  return {name: _save(base_bpe, tmp_path_factory.mktemp(name), name, f["template"]) for name, f in FAMILIES.items()}


def _pair(directory):
  from transformers import PreTrainedTokenizerFast

  return load_tokenizer(directory), PreTrainedTokenizerFast.from_pretrained(directory)


def _ref_ids(ref, messages, add_generation_prompt=False):
  return list(ref.apply_chat_template(messages, tokenize=True, return_dict=False,
                                      add_generation_prompt=add_generation_prompt))


def _trainable_runs(ids, trainable, tok):
  runs, cur = [], []
  for i, t in zip(ids, trainable):
    if t:
      cur.append(i)
    elif cur:
      runs, cur = runs + [tok.decode(cur)], []
  return runs + ([tok.decode(cur)] if cur else [])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rendering_and_prompt_ids_match_transformers(family, family_dirs):
  tok, ref = _pair(family_dirs[family])
  assert tok.chat_template == FAMILIES[family]["template"]
  assert tok.chat_template_origin.endswith("chat_template.jinja")
  form = JinjaChat.of(tok)
  for messages in PROMPTS + [CONVERSATION]:
    for gen in (False, True):
      want = ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
      assert form.render(messages, gen) == want
  # The one prompt encoder: the template's system message, then the problem, then the generation prompt.
  template = PromptTemplate("r1", chat_format="tokenizer", system="Answer with one number.")
  problem = CONVERSATION[1]["content"]
  ids = encode.prompt_ids(problem, tok, template)
  assert ids == _ref_ids(ref, CONVERSATION[:2], add_generation_prompt=True)
  if tok.bos_id is not None:  # the template writes the BOS as text; none is added on top
    assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1
  assert template.prompt_text(problem, tok) == ref.apply_chat_template(CONVERSATION[:2], tokenize=False,
                                                                       add_generation_prompt=True)
  # "auto" picks the same template; a built-in name keeps the built-in.
  auto = PromptTemplate("r1", chat_format="auto", system="Answer with one number.")
  assert encode.prompt_ids(problem, tok, auto) == ids
  assert isinstance(PromptTemplate("r1", chat_format="chatml").chat_form(tok), chat.ChatFormat)
  # Grain workers get the tokenizer pickled: the template travels with it.
  again = pickle.loads(pickle.dumps(tok))
  assert (again.chat_template, again.chat_template_origin) == (tok.chat_template, tok.chat_template_origin)


@pytest.mark.parametrize("family", SFT_FAMILIES)
def test_sft_conversation_trains_on_assistant_content_and_end_marker(family, family_dirs):
  tok, ref = _pair(family_dirs[family])
  template = PromptTemplate("chat", chat_format="auto")
  ids, trainable = encode.sft_ids({"messages": CONVERSATION}, tok, template)
  assert ids == _ref_ids(ref, CONVERSATION)
  end = FAMILIES[family]["end"]
  trim = family == "llama3"  # the Llama-3 template trims contents
  want = [(m["content"].strip() if trim else m["content"]) + end for m in CONVERSATION if m["role"] == "assistant"]
  assert _trainable_runs(ids, trainable, tok) == want
  if family == "chatml":  # transformers' own mask from the template's {% generation %} spans
    out = ref.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert [bool(m) for m in out["assistant_masks"]] == trainable
  # encode_sft: the loss sits where the *target* is trainable.
  row = encode.encode_sft({"messages": CONVERSATION}, tok, template, seq_len=1024)
  assert row["tokens"].tolist() == ids and row["loss_mask"].tolist() == [int(t) for t in trainable[1:]] + [0]


@pytest.mark.parametrize("family", SFT_FAMILIES)
def test_sft_prompt_response_starts_with_the_sampled_prompt(family, family_dirs):
  tok, ref = _pair(family_dirs[family])
  template = PromptTemplate("r1", chat_format="tokenizer", generation_prefix="<think>\n")
  problem, response = "What is 17 + 25?", "<think>\n17 + 25 = 42\n</think>\n\nThe sum is 42."
  prompt = encode.prompt_ids(problem, tok, template)
  ids, trainable = encode.sft_ids({"prompt": problem, "response": response}, tok, template)
  assert ids[:len(prompt)] == prompt and not any(trainable[:len(prompt)])
  full = [{"role": "user", "content": problem}, {"role": "assistant", "content": response}]
  assert ids == _ref_ids(ref, full)
  body = response[len("<think>\n"):]  # the prefix is part of the prompt the policy is sampled from
  assert _trainable_runs(ids, trainable, tok) == [body + FAMILIES[family]["end"]]
  # The reward model reads the same ids.
  assert encode.encode_scored(problem, response, tok, template) == ids


def test_a_template_that_rewrites_assistant_turns_cannot_mark_them(family_dirs, base_bpe, tmp_path):
  tok, _ = _pair(family_dirs["r1_distill"])
  template = PromptTemplate("chat", chat_format="tokenizer")
  # The generation prompt opens <think>, the history's assistant header does not.
  with pytest.raises(ValueError, match=r"chat_template\.jinja: .* is not a prefix of .*built-in"):
    encode.sft_ids({"messages": CONVERSATION[1:3]}, tok, template)
  with pytest.raises(ValueError, match="is not a prefix"):
    encode.sft_ids({"prompt": "What is 1 + 2?", "response": "3"}, tok, PromptTemplate("r1", chat_format="auto"))
  # Reasoning dropped from earlier turns: one turn marks fine, a second rewrites the first.
  tok = _with_template(base_bpe, tmp_path, STRIPS_HISTORY)
  ids, trainable = encode.sft_ids({"messages": CONVERSATION[1:3]}, tok, template)
  assert _trainable_runs(ids, trainable, tok) == [CONVERSATION[2]["content"] + "<|im_end|>"]
  with pytest.raises(ValueError, match=r"rendering of messages\[:2\] is not a prefix of its rendering of "
                                       r"messages\[:3\] with the generation prompt"):
    encode.sft_ids({"messages": CONVERSATION[1:]}, tok, template)


def test_without_a_template_the_built_in_format_is_used(base_bpe, tmp_path, sp_tokenizer):
  tok = load_tokenizer(_save(base_bpe, tmp_path / "plain", "chatml", None))
  assert tok.chat_template is None
  auto = PromptTemplate("r1", chat_format="auto", system="S")
  assert auto.chat_form(tok) is chat.CHAT_FORMATS["chatml"]  # from the vocabulary's markers
  builtin = PromptTemplate("r1", chat_format="chatml", system="S")
  assert encode.prompt_ids("What is 1 + 2?", tok, auto) == encode.prompt_ids("What is 1 + 2?", tok, builtin)
  with pytest.raises(ValueError, match="no chat_template"):
    encode.prompt_ids("What is 1 + 2?", tok, PromptTemplate("r1", chat_format="tokenizer"))
  assert auto.chat_form(sp_tokenizer) is chat.CHAT_FORMATS["plain"]  # the demo's sentencepiece
  # r1_zero never renders a chat, so it needs no template.
  assert encode.prompt_ids("q", tok, PromptTemplate("r1_zero", chat_format="tokenizer")) == tok.encode(
      PromptTemplate("r1_zero").prompt_text("q"))


def test_a_template_without_bos_gets_none_added(base_bpe, tmp_path):
  """The ids are the template's text tokenized as is, as transformers tokenizes it: a tokenizer with a
  BOS whose template writes none gets none (the built-in formats add it)."""
  directory = _save(base_bpe, tmp_path, "r1_distill", R1_DISTILL.replace("{{ bos_token }}", ""))
  tok, ref = _pair(directory)
  template = PromptTemplate("r1", chat_format="tokenizer")
  ids = encode.prompt_ids("What is 17 + 25?", tok, template)
  assert tok.bos_id is not None and tok.bos_id not in ids
  assert ids == _ref_ids(ref, CONVERSATION[1:2], add_generation_prompt=True)
  assert encode.prompt_ids("What is 17 + 25?", tok, PromptTemplate("r1", chat_format="deepseek"))[0] == tok.bos_id


def _with_template(base_bpe, directory, template):
  return load_tokenizer(_save(base_bpe, directory, "chatml", template))


@pytest.mark.parametrize("template, error", [
    ("{% for m in messages %}{{ m['content'] }", r"chat_template\.jinja: line 1: chat template does not parse"),
    ("{{ raise_exception('system messages are not supported') }}",
     r"chat_template\.jinja: chat template failed .*system messages are not supported"),
    ("{% for m in messages %}{{ m['content'] + '<|im_end|>' }}{% endfor %}", "renders no generation prompt"),
    ("{% for m in messages %}{% if m['role'] == 'assistant' %}A:{% endif %}{{ m['content'] + '\\n' }}{% endfor %}"
     "{% if add_generation_prompt %}A:{% endif %}", "with no stop token"),
], ids=["syntax", "raise_exception", "no_generation_prompt", "no_stop_token"])
def test_a_broken_template_raises_a_clear_error(base_bpe, tmp_path, template, error):
  tok = _with_template(base_bpe, tmp_path, template)
  with pytest.raises(ValueError, match=error):
    encode.sft_ids({"messages": CONVERSATION[1:3]}, tok, PromptTemplate("chat", chat_format="tokenizer"))


def test_tojson_special_tokens_and_the_config_forms(base_bpe, tmp_path, family_dirs):
  import json

  from transformers import PreTrainedTokenizerFast

  source = ("{{ messages | tojson }}{{ messages[0] | tojson(indent=2) }}{{ eos_token }}|{{ pad_token }}|"
            "{{ bos_token }}{% if add_generation_prompt %}<|im_start|>{% endif %}")
  tok = _with_template(base_bpe, tmp_path / "j", source)
  ref = PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "j"))
  messages = [{"role": "user", "content": "café <b>&</b> 🙂"}]
  assert JinjaChat.of(tok).render(messages, True) == ref.apply_chat_template(
      messages, tokenize=False, add_generation_prompt=True)
  # Older checkpoints keep the template in tokenizer_config.json: a string, or named entries.
  config = json.load(open(f"{family_dirs['chatml']}/tokenizer_config.json"))
  raw = open(f"{family_dirs['chatml']}/tokenizer.json").read()
  from tokenizers import Tokenizer

  entries = [{"name": "tool_use", "template": "x"}, {"name": "default", "template": CHATML}]
  assert HFTokenizer(Tokenizer.from_str(raw), {**config, "chat_template": entries}).chat_template == CHATML
  with pytest.raises(ValueError, match="none named 'default'"):
    HFTokenizer(Tokenizer.from_str(raw), {**config, "chat_template": entries[:1]})
