"""R1-Zero: GRPO straight from a base model with the Table-1 template; rewards = accuracy + format.

Presets:
  tiny                CPU, minutes: a tiny model on offline 2-digit additions (the demo's task).
  qwen2.5-math-1.5b   one host; set model.init_from to the HF checkpoint directory.
  deepseek-v3         a pod; set model.init_from, mesh sizes.
"""
from r1jax.train.configs import grpo_base


def get_config(arg: str = "tiny"):
  c = grpo_base("r1")
  c.stage = "r1_zero"
  c.data.template.name = "r1_zero"
  if arg == "tiny":
    c.model.preset = "tiny_dense"
    c.tokenizer.train_corpus = "pretraining,cold_start"
    c.tokenizer.vocab_size = 1024
    c.grpo.num_generations = 8
    c.grpo.prompts_per_step = 4
    c.grpo.num_minibatches = 2
    c.grpo.max_completion_length = 128
    c.grpo.learning_rate = 3e-4
    c.grpo.beta = 0.001
    c.grpo.ref_update_interval = 400
    c.grpo.logprob_chunk_size = 256
    c.optim.learning_rate = 3e-4
    c.data.batch_size = 8
    c.data.task.name = "addition"
    c.data.task.n = 512
    c.data.max_prompt_len = 256
    c.sampling.stop_at_answer_end = True
    c.train.rollouts = 20
    c.train.checkpoint_every = 5
    c.train.eval_every = 10
    c.eval.task = "addition"
    c.eval.n = 16
    c.eval.k = 4
    c.eval.max_new_tokens = 160
  elif arg == "qwen2.5-math-1.5b":
    c.model.preset = ""
    c.model.init_from = ""  # the HF checkpoint directory
    c.mesh.fsdp = -1
    # Qwen2.5-Math-1.5B has 4,096 positions: prompt 512 + completion 3,584 (paper: 32k, then 64k).
    c.data.max_prompt_len = 512
    c.grpo.max_completion_length = 3584
    c.data.task.name = "countdown"
    c.train.rollouts = 500
    c.train.eval_every = 25
    c.eval.max_new_tokens = 3584
  elif arg == "deepseek-v3":
    c.model.preset = ""
    c.model.init_from = ""
    c.mesh.update(dict(data=1, fsdp=-1, expert=64, tensor=1))
    c.model.overrides = {"moe_backend": "ragged", "remat": "full"}
    c.train.rollouts = 10000
  else:
    raise ValueError(f"r1_zero: unknown preset {arg!r} (tiny, qwen2.5-math-1.5b, deepseek-v3)")
  return c
