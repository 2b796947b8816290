"""Base ml-collections configs for the stage kinds; experiments/ files start from these.

Every field a runner reads exists here, so `--config.a.b=v` overrides are checked against a
locked config, and a typo is a KeyError naming the key. A field that follows from others is a
FieldReference (it follows overrides of its sources), never a second copy set by hand.

Shapes shared by several experiment files are helpers here (`tiny_grpo` for the CPU demo,
`qwen_math_grpo` for Qwen2.5-Math-1.5B on one host), not blocks copied between files.
"""
from __future__ import annotations

import dataclasses

import ml_collections
from ml_collections import config_dict

from r1jax.data.config import data_config
from r1jax.rl.config import LEARNING_RATES, GRPOConfig, get_recipe


def _model() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(preset="tiny_dense", init_from="", overrides={}))


def _tokenizer() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(path="", train_corpus="", vocab_size=1024, seed=0))


def _optim(lr: float) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(learning_rate=lr, warmup_steps=10, schedule="cosine",
                                        final_lr_fraction=0.1, b1=0.9, b2=0.95, eps=1e-8,
                                        weight_decay=0.1, grad_clip=1.0))


def _stage(kind: str, data_kind: str) -> ml_collections.ConfigDict:
  """Fields every stage has."""
  c = ml_collections.ConfigDict()
  c.kind = kind
  c.stage = kind
  c.seed = 0
  c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, expert=1, tensor=1))
  c.model = _model()
  c.tokenizer = _tokenizer()
  c.data = data_config(data_kind)
  c.compilation_cache = True
  c.compilation_cache_dir = ""
  c.distributed = distributed_config()
  return c


def distributed_config() -> ml_collections.ConfigDict:
  """Multi-host: 1 = single process, 0 = discover (TPU VM metadata, SLURM), > 1 = explicit
  coordinator / process id. `local_device_ids` ("0,1,2,3"): the accelerators this process drives
  ("" = JAX's choice: all of the host's, or GPU $SLURM_LOCALID under SLURM). Read once, by the CLI,
  from the config it was given (a pipeline's own, not its stages')."""
  return ml_collections.ConfigDict(dict(num_processes=1, process_id=0, coordinator_address="",
                                        local_device_ids=""))


def sft_base() -> ml_collections.ConfigDict:
  c = _stage("sft", "sft")
  c.data.corpus = ""  # a synthetic corpus name (data.tasks.corpora) instead of files
  c.data.corpus_size = 0
  c.data.corpus_options = {}  # keyword arguments of that corpus function (tasks, trace_style, …)
  c.optim = _optim(1e-5)
  c.train = ml_collections.ConfigDict(dict(steps=1000, grad_accum_steps=1, log_every=10, checkpoint_every=200,
                                           keep_checkpoints=2, router_bias_rate=0.001,
                                           logprob_chunk_size=1024, progress=True))
  return c


def grpo_base(recipe: str = "r1") -> ml_collections.ConfigDict:
  """A GRPO stage with the `recipe`'s objective (rl/config.py RECIPES) and learning rate."""
  g = get_recipe(recipe)
  c = _stage("grpo", "rl")
  c.grpo = ml_collections.ConfigDict({f.name: getattr(g, f.name) for f in dataclasses.fields(GRPOConfig)})
  # Typed None fields must stay overridable from the command line.
  c.grpo.dual_clip_c = config_dict.placeholder(float) if g.dual_clip_c is None else g.dual_clip_c
  c.grpo.max_len_norm = config_dict.placeholder(int) if g.max_len_norm is None else g.max_len_norm
  # Derived: one rollout reads prompts_per_step x num_minibatches prompts (one global data batch).
  c.data.batch_size = c.grpo.get_ref("prompts_per_step") * c.grpo.get_ref("num_minibatches")
  c.rewards = ml_collections.ConfigDict(dict(weights={"accuracy": 1.0, "format": 1.0}, options={}))
  # num_slots: rows decoded at once (0 = the whole rollout); with fewer slots than rows a finished
  # slot takes the next queued row (refill): long-tail lengths and rollouts larger than device
  # memory, with the very samples of one batch (the sampler is row-deterministic).
  c.sampling = ml_collections.ConfigDict(dict(top_p=1.0, top_k=0, stop_at_answer_end=False, num_slots=0,
                                              refill=True))
  c.optim = _optim(LEARNING_RATES[recipe])
  c.optim.warmup_steps = 0
  c.optim.schedule = "constant"
  c.optim.weight_decay = 0.0
  c.train = ml_collections.ConfigDict(dict(rollouts=100, checkpoint_every=10, keep_checkpoints=2,
                                           router_bias_rate=0.0,  # paper: balancing bias frozen in RL
                                           length_multiple=64, eval_every=0, plots=True,
                                           # stop after this many non-finite (skipped) updates in a row
                                           max_nonfinite_updates=3, progress=True))
  c.eval = ml_collections.ConfigDict(dict(task="countdown", n=64, k=4, temperature=0.6, top_p=0.95,
                                          seed=1234, difficulty=1))
  # Derived: held-out answers get the rollout's length unless set (a computed reference, so setting
  # eval.max_new_tokens never changes grpo.max_completion_length).
  c.eval.max_new_tokens = c.grpo.get_ref("max_completion_length").to_int()
  return c


def tiny_grpo(c: ml_collections.ConfigDict, *, learning_rate: float, rollouts: int,
              eval_every: int) -> ml_collections.ConfigDict:
  """The CPU-sized GRPO shape the tiny presets share (the demo's RL stages).

  A tiny_dense policy (the pipeline replaces it with model.init_from) on offline 2-digit additions.
  Measured on the demo (see the README), each choice for a reason:
  - 192 new tokens: plain traces are ~90 tokens, traces with a "Wait, let me re-check" detour
    150-160; a 128 cap cut every reflection off (0 reward) and RL learned to stop reflecting.
  - 16 prompts x 8 samples per rollout in 2 minibatches of 64, lr 5e-5: at 32-64 samples per
    update Adam's noise swamped the signal (as fast a collapse as a reward-shuffled control).
  - rollouts at T = 0.7 (the paper's stage-4 temperature; log-probs are tempered to match): at
    T = 1 a 2-layer model's samples are mostly noise (14% accurate where T = 0.6 gives 40%).
  - dynamic sampling (DAPO) skips groups whose rewards are all equal.
  - accuracy dominates the reward (format and language 0.2): a format term as large as accuracy
    is maximised by the shortest valid think block when the base is rarely right.
  """
  c.model.preset = "tiny_dense"
  c.tokenizer.train_corpus = "pretraining,cold_start"
  c.grpo.num_generations = 8
  c.grpo.prompts_per_step = 8
  c.grpo.num_minibatches = 2
  c.grpo.max_completion_length = 192
  c.grpo.rollout_temperature = 0.7
  c.grpo.dynamic_sampling = True
  c.grpo.logprob_chunk_size = 256
  c.optim.learning_rate = learning_rate
  c.data.task.name = "addition"
  c.data.task.n = 512
  c.data.max_prompt_len = 256
  c.rewards.weights = {name: (1.0 if name == "accuracy" or name.endswith("_rm") else 0.2)
                       for name in c.rewards.weights}
  c.sampling.stop_at_answer_end = True
  c.train.rollouts = rollouts
  c.train.checkpoint_every = 5
  c.train.eval_every = eval_every
  c.eval.task = "addition"
  c.eval.n, c.eval.k = 128, 4
  return c


def qwen_math_grpo(c: ml_collections.ConfigDict, *, rollouts: int, eval_every: int = 25) -> ml_collections.ConfigDict:
  """GRPO on Qwen2.5-Math-1.5B, one host (FSDP over its devices); set model.init_from.

  The recipe's hyper-parameters stay; only the length is capped by the model: 4,096 positions =
  prompt 512 + completion 3,584 (the paper: 32k, then 64k). Offline countdown problems unless
  data.spec.paths names problem files with answers.
  """
  c.model.preset = ""
  c.model.init_from = ""  # an HF-format checkpoint directory (the previous stage's <workdir>/final)
  c.mesh.fsdp = -1
  c.data.max_prompt_len = 512
  c.grpo.max_completion_length = 3584
  c.grpo.logprob_chunk_size = 1024
  c.data.task.name = "countdown"
  c.data.task.n = 20000
  c.train.rollouts = rollouts
  c.train.checkpoint_every = 5
  c.train.eval_every = eval_every
  c.eval.task = "countdown"
  return c
