"""Templates: the paper's Table 1 verbatim, the R1 format, chat formats, few-shot from config."""
import pytest

from r1jax.data import chat, templates
from r1jax.data.templates import PromptTemplate, build_template

# DeepSeek-R1 (arXiv 2501.12948), Table 1, typed from the paper; "prompt" is the substitution.
TABLE_1 = ("A conversation between User and Assistant. The user asks a question, and the "
           "Assistant solves it. The assistant first thinks about the reasoning process in the "
           "mind and then provides the user with the answer. The reasoning process and answer "
           "are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
           "<think> reasoning process here </think> <answer> answer here </answer>. User: prompt. "
           "Assistant:")


def test_r1_zero_is_table_1_verbatim():
  problem = "What is {x} + 3? Use $\\frac{1}{2}$."  # braces must survive substitution
  text = templates.r1_zero_prompt(problem)
  head, tail = TABLE_1.split("User: prompt.")
  assert text == head + f"User: {problem}." + tail
  assert PromptTemplate("r1_zero").prompt_text(problem) == text


def test_r1_zero_sft_segments():
  t = PromptTemplate("r1_zero")
  response = templates.r1_zero_response("2 + 2 = 4", "4")
  segs = t.sft_segments("What is 2 + 2?", response)
  assert [s.trainable for s in segs] == [False, True]
  assert segs[0].text == t.prompt_text("What is 2 + 2?")
  assert segs[1].text == " <think> 2 + 2 = 4 </think> <answer> 4 </answer>"
  assert segs[1].append_eos


def test_r1_format_reasoning_then_summary():
  text = templates.r1_response("step 1\nstep 2", "The sum is 4.", "4")
  assert text == "<think>\nstep 1\nstep 2\n</think>\n\nThe sum is 4. <answer>4</answer>"
  t = PromptTemplate("r1", chat_format="chatml", generation_prefix="<think>\n")
  assert t.prompt_text("Q?") == "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n<think>\n"
  segs = t.sft_segments("Q?", text)
  trainable = [s.text for s in segs if s.trainable]
  # The forced generation prefix belongs to the prompt (the sampler is given it), not the target.
  assert trainable == [text[len("<think>\n"):] + "<|im_end|>"]
  assert segs[:len(t.prompt_segments("Q?"))] == t.prompt_segments("Q?")
  assert [s.text for s in segs[len(t.prompt_segments("Q?")) + 1:]] == ["\n"]


CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}]

# The published turn formats of each family, written out by hand.
EXPECTED = {
    "chatml": ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
               "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
               "<|im_start|>assistant\n4<|im_end|>\n"),
    "deepseek": ("<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>Hello."
                 "<｜end▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>"),
    "llama3": ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"),
    "plain": "System: Be brief.\nUser: Hi\nAssistant: Hello.<EOS>\nUser: 2+2?\nAssistant: 4<EOS>\n",
}
TURN_END = {"chatml": "<|im_end|>", "deepseek": "<｜end▁of▁sentence｜>", "llama3": "<|eot_id|>",
            "plain": ""}


@pytest.mark.parametrize("fmt", sorted(EXPECTED))
def test_chat_formats(fmt):
  assert chat.chat_text(CONVERSATION, fmt, eos_text="<EOS>") == EXPECTED[fmt]
  segs = chat.render_chat(CONVERSATION, fmt)
  trainable = [s for s in segs if s.trainable]
  assert [s.text for s in trainable] == ["Hello." + TURN_END[fmt], "4" + TURN_END[fmt]]
  assert all(s.append_eos == (fmt == "plain") for s in trainable)
  gen = chat.chat_text(CONVERSATION[:2], fmt, add_generation_prompt=True)
  assert gen.endswith(chat.get_chat_format(fmt).assistant_prefix)


def test_chat_validation_names_the_message():
  with pytest.raises(ValueError, match=r"messages\[1\]\.role"):
    chat.render_chat([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}])
  with pytest.raises(ValueError, match=r"messages\[0\]\.content"):
    chat.render_chat([{"role": "user", "content": 3}])
  with pytest.raises(ValueError, match="system message may only come first"):
    chat.render_chat([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])
  with pytest.raises(KeyError, match="unknown chat format"):
    chat.get_chat_format("jinja")


def test_zero_shot_by_default_few_shot_from_config():
  default = build_template({"name": "r1_zero"})
  assert default.shots == ()
  shots = [{"prompt": "1+1?", "response": "<think> 1+1=2 </think> <answer> 2 </answer>"}]
  few = build_template({"name": "r1_zero", "shots": shots})
  text = few.prompt_text("5+5?")
  assert text.count("User: ") == 2
  assert text.index("User: 1+1?. Assistant: <think> 1+1=2") < text.index("User: 5+5?. Assistant:")
  assert text.endswith("User: 5+5?. Assistant:")
  chat_few = build_template({"name": "r1", "chat_format": "chatml", "shots": shots})
  msgs = chat_few.prompt_text("5+5?")
  assert msgs.index("1+1?") < msgs.index("<answer> 2 </answer>") < msgs.index("5+5?")
  with pytest.raises(ValueError, match=r"template.shots\[0\]"):
    build_template({"name": "r1", "shots": [{"prompt": "x"}]})
  with pytest.raises(ValueError, match="template.name"):
    build_template({"name": "r2"})


def test_config_dict_is_accepted():
  import ml_collections

  cfg = ml_collections.ConfigDict({"name": "chat", "chat_format": "llama3", "system": "S",
                                   "generation_prefix": "", "shots": []})
  t = build_template(cfg)
  assert t.prompt_text("q").startswith("<|begin_of_text|><|start_header_id|>system")
