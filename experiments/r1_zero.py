"""R1-Zero: GRPO straight from a base model with the Table-1 template; rewards = accuracy + format.

Presets:
  tiny                CPU, minutes: a tiny model on offline 2-digit additions (the demo's task).
  qwen2.5-math-1.5b   one host; set model.init_from to the HF checkpoint directory.
  deepseek-v3         a pod; set model.init_from, mesh sizes.
"""
from r1jax.train.configs import grpo_base, tiny_grpo


def get_config(arg: str = "tiny"):
  c = grpo_base("r1")
  c.stage = "r1_zero"
  c.data.template.name = "r1_zero"
  if arg == "tiny":
    tiny_grpo(c, learning_rate=5e-5, rollouts=20, eval_every=5)
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
