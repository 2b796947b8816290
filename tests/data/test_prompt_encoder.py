"""One prompt encoder: every path that hands a policy a problem gives it the same token ids.

The paths: the RL prompt pipeline, the eval pipeline, `evaluate_policy` (in-loop and stage
evaluation), `generate_and_select` (rejection sampling and the distillation teacher); SFT rows and
reward-model rows must start with those same ids. Each is checked against `prompt_ids` and against
an independent spelling of the expected ids (BOS, then the rendered template text).
"""
import dataclasses

import numpy as np
import pytest

from r1jax.data import encode, pipelines
from r1jax.data.records import DatasetSpec
from r1jax.data.sources import InMemorySource
from r1jax.data.templates import PromptTemplate
from r1jax.eval.evaluate import evaluate_policy
from r1jax.rewards.model import scored_ids
from r1jax.train.rejection import generate_and_select

RECORDS = [{"prompt": "What is 17 + 25?", "answer": "42", "id": "a"},
           {"prompt": "What is 38 + 46?", "answer": "84", "id": "b"}]
TEMPLATES = [PromptTemplate("r1_zero"), PromptTemplate("r1", chat_format="plain"),
             PromptTemplate("r1", chat_format="chatml", generation_prefix="<think>\n", system="Be brief.")]


@dataclasses.dataclass
class _Gen:
  tokens: np.ndarray
  lengths: np.ndarray
  finish_reasons: list
  prompt_index: np.ndarray

  def completions(self):
    return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths)]


class RecordingSampler:
  """Stands in for the sampler: records the prompt ids it is given, returns one EOS per sample."""

  def __init__(self, eos_id):
    self.eos_id, self.prompts = eos_id, []

  def generate(self, params, prompts, sp, **_):
    self.prompts.extend([list(map(int, p)) for p in prompts])
    n = len(prompts) * sp.n
    return _Gen(np.full((n, 1), self.eos_id, np.int32), np.ones((n,), np.int32), ["stop"] * n,
                np.repeat(np.arange(len(prompts)), sp.n))


def _expected(tok, template, problem):
  bos = [tok.bos_id] if tok.bos_id is not None else []
  return bos + tok.encode(template.prompt_text(problem))


@pytest.fixture(params=["sentencepiece", "hf"])
def tokenizer(request, sp_tokenizer, hf_tokenizer_dir):
  if request.param == "sentencepiece":
    assert sp_tokenizer.bos_id is not None  # the path that once lost its BOS
    return sp_tokenizer
  from r1jax.data.tokenizer import HFTokenizer
  return HFTokenizer.from_dir(hf_tokenizer_dir)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: f"{t.name}-{t.chat_format}")
def test_every_path_gives_the_policy_the_same_prompt_ids(tokenizer, template):
  want = {r["id"]: encode.prompt_ids(r["prompt"], tokenizer, template) for r in RECORDS}
  for r in RECORDS:
    assert want[r["id"]] == _expected(tokenizer, template, r["prompt"])
  got: dict[str, dict] = {}

  src = InMemorySource(RECORDS, DatasetSpec(paths=("m",), kind="rl"))
  batch = next(iter(pipelines.rl_prompt_dataset(src, tokenizer, template, batch_size=2, max_prompt_len=512,
                                                shuffle=False, read_threads=0)))
  got["rl data"] = {m["id"]: p for m, p in zip(batch["metadata"], batch["prompt_tokens"])}
  batch = next(iter(pipelines.eval_dataset(src, tokenizer, template, k=1, batch_size=2, max_prompt_len=512)))
  got["eval data"] = {m["id"]: p for m, p in zip(batch["metadata"], batch["prompt_tokens"])}

  sampler = RecordingSampler(tokenizer.eos_id)
  evaluate_policy(sampler, None, tokenizer, template, RECORDS, benchmark="b", label="l", k=2,
                  grade=lambda t, a, m: np.zeros(len(t)))
  got["evaluate_policy"] = {r["id"]: p for r, p in zip(RECORDS, sampler.prompts)}

  sampler = RecordingSampler(tokenizer.eos_id)
  generate_and_select(sampler, None, tokenizer, template, RECORDS, lambda t, a, m: np.zeros(len(t)), k=2,
                      keep_per_prompt=1)
  got["rejection / distillation teacher"] = {r["id"]: p for r, p in zip(RECORDS, sampler.prompts)}

  for path, ids in got.items():
    assert ids == want, f"{path} encodes prompts differently"
  # SFT rows and reward-model rows read the same prompt ids, then the response.
  for r in RECORDS:
    response = "<think>\nadd the columns\n</think>\n\nsum <answer>42</answer>"
    p = want[r["id"]]
    sft = encode.encode_sft({"prompt": r["prompt"], "response": response}, tokenizer, template, 1024)
    assert sft["tokens"][:len(p)].tolist() == p and not sft["loss_mask"][:len(p) - 1].any()
    assert sft["loss_mask"][len(p) - 1] == 1  # the first target is the first response token
    rm, _ = scored_ids(r["prompt"], response, tokenizer, template, 1024)
    assert rm[:len(p)] == p and len(rm) > len(p)
