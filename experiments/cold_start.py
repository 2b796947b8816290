"""R1 stage 1: cold-start SFT on readable long-CoT traces (reasoning, then a summary)."""
from r1jax.train.configs import sft_base


def get_config(arg: str = "tiny"):
  c = sft_base()
  c.stage = "cold_start"
  c.data.template.name = "r1"
  if arg == "tiny":
    c.model.preset = "tiny_dense"
    c.tokenizer.train_corpus = "pretraining,cold_start"
    c.data.corpus = "cold_start"
    c.data.batch_size = 8
    c.data.seq_len = 512
    c.optim.learning_rate = 1e-3
    c.train.steps = 40
    c.train.log_every = 5
    c.train.checkpoint_every = 20
    c.train.logprob_chunk_size = 512
  elif arg == "qwen2.5-math-1.5b":
    c.model.preset = ""
    c.model.init_from = ""  # HF checkpoint directory of the base model
    c.data.spec.paths = ()  # JSONL/Parquet of {prompt, response}
    c.data.batch_size = 64
    c.data.seq_len = 8192
    c.optim.learning_rate = 1e-5
    c.train.steps = 2000
  else:
    raise ValueError(f"cold_start: unknown argument {arg!r} (tiny, qwen2.5-math-1.5b)")
  return c
