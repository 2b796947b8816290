"""Evaluation: pass@1 over k samples at T = 0.6, top-p 0.95, cons@k, one column per checkpoint.

    python -m r1jax --config=experiments/evaluate.py:tiny --workdir=runs/eval \
        --config.checkpoints=base=runs/base/final,r1-zero=runs/r1_zero/final
"""
import ml_collections

from r1jax.train.configs import distributed_config

from r1jax.data.config import data_config


def get_config(arg: str = "tiny"):
  c = ml_collections.ConfigDict()
  c.kind = "evaluate"
  c.stage = "evaluate"
  c.seed = 0
  c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, expert=1, tensor=1))
  c.checkpoints = ""  # "label=dir,label=dir": HF-format checkpoints (a stage's <workdir>/final), in column order
  c.tokenizer = ml_collections.ConfigDict(dict(path=""))  # "" = each checkpoint's own tokenizer
  c.data = data_config("eval")
  c.data.template.name = "r1_zero"
  c.sampling = ml_collections.ConfigDict(dict(stop_at_answer_end=True))
  c.eval = ml_collections.ConfigDict(dict(tasks="countdown,arithmetic", n=64, k=16, temperature=0.6, top_p=0.95,
                                          max_new_tokens=32768, seed=1234, difficulty=1))
  c.compilation_cache = True
  c.compilation_cache_dir = ""
  c.distributed = distributed_config()
  if arg == "tiny":
    c.eval.n, c.eval.k, c.eval.max_new_tokens = 128, 4, 192  # the demo: >= 128 problems, k >= 4
  elif arg == "paper":
    c.eval.k, c.eval.max_new_tokens = 64, 32768  # cons@64 as in the paper
  else:
    raise ValueError(f"evaluate: unknown argument {arg!r} (tiny, paper)")
  return c
