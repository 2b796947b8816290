"""Evaluation: pass@1 over k samples at T = 0.6, top-p 0.95, cons@k, one column per checkpoint.

    python -m r1jax --config=experiments/evaluate.py:tiny --workdir=runs/eval \
        --config.checkpoints=base=runs/base/final,r1-zero=runs/r1_zero/final

The paper's benchmarks (Table 3) from local files, at the paper's settings (32,768 new tokens,
T = 0.6, top-p 0.95; k per benchmark: r1jax/data/benchmarks/__init__.py):

    python -m r1jax --config=experiments/evaluate.py:paper --workdir=runs/paper_eval \
        --config.checkpoints=r1=/ckpt/r1,distill=/ckpt/distill \
        --config.eval.benchmarks=aime2024=/data/aime.parquet,math500=/data/m500.jsonl,gpqa_diamond=/data/gpqa.csv
(README.md, "Paper benchmarks": the file layouts, k per benchmark and paper_table.md.)
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
                                          max_new_tokens=32768, seed=1234, difficulty=1, batch_prompts=64))
  # Benchmark files: "name=path,..." with names aime2024, math500, gpqa_diamond, livecodebench (JSONL,
  # Parquet or CSV in the datasets' public column layouts; never downloaded). Each is sampled
  # benchmark_k times per question ("name=k,..."; unnamed ones: the paper preset's k of the benchmark).
  c.eval.benchmarks = ""
  c.eval.benchmark_k = ""
  c.eval.livecodebench = ml_collections.ConfigDict(dict(date_from="", date_to=""))  # date_from <= contest_date < date_to
  # The code reward's sandbox for code benchmarks (always all-or-nothing: a sample passes every test or fails).
  c.eval.code = ml_collections.ConfigDict(dict(wall_s=10.0, cpu_s=6.0, memory_mb=1024))
  c.compilation_cache = True
  c.compilation_cache_dir = ""
  c.distributed = distributed_config()
  if arg == "tiny":
    c.eval.n, c.eval.k, c.eval.max_new_tokens = 128, 4, 192  # the demo: >= 128 problems, k >= 4
  elif arg == "paper":
    # The paper's Table 3 on the benchmark files (given in eval.benchmarks); LiveCodeBench in its
    # window, 2024-08 to 2025-01. 8 prompts a batch: at k = 64 that is 512 sequences of up to 32k tokens.
    c.eval.tasks, c.eval.max_new_tokens, c.eval.batch_prompts = "", 32768, 8
    c.eval.livecodebench.update(dict(date_from="2024-08-01", date_to="2025-02-01"))
  else:
    raise ValueError(f"evaluate: unknown argument {arg!r} (tiny, paper)")
  return c
