"""R1-Zero: GRPO straight from a base model with the Table-1 template; rewards = accuracy + format.

Arguments (`--config=experiments/<file>.py:<arg>`):
  tiny                CPU, minutes: a tiny model on offline 2-digit additions (the demo's task).
  qwen2.5-math-1.5b   one host; set model.init_from to the HF checkpoint directory.
  deepseek-v3         a pod; set model.init_from, mesh sizes.
"""
from r1jax.train.configs import grpo_base, qwen_math_grpo, tiny_grpo


def get_config(arg: str = "tiny"):
  c = grpo_base("r1")
  c.stage = "r1_zero"
  c.data.template.name = "r1_zero"
  if arg == "tiny":
    tiny_grpo(c, learning_rate=5e-5, rollouts=20, eval_every=5)
  elif arg == "qwen2.5-math-1.5b":
    qwen_math_grpo(c, rollouts=500)  # model.init_from = the base model's HF checkpoint directory
  elif arg == "deepseek-v3":
    c.model.preset = ""
    c.model.init_from = ""
    c.mesh.update(dict(data=1, fsdp=-1, expert=64, tensor=1))
    c.model.overrides = {"moe_backend": "ragged", "remat": "full"}
    c.train.rollouts = 10000
  else:
    raise ValueError(f"r1_zero: unknown argument {arg!r} (tiny, qwen2.5-math-1.5b, deepseek-v3)")
  return c
