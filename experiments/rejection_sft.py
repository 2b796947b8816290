"""R1 stage 3: rejection sampling from the reasoning-RL checkpoint, then SFT of the *base* model.

This file configures the sampling half (kind "rejection", runner
`r1jax.train.rejection_stage:run_rejection`). The pipeline chains it with an SFT stage:

  1. rejection sampling (this config): `model.init_from` = the reasoning-RL export
     (`<rl workdir>/final`); writes `<workdir>/data/rejection_sft.jsonl` (kind "sft": prompt,
     response in the R1 format, answer, task, language, source) and `<workdir>/stats.json`.
         python -m r1jax --config=experiments/rejection_sft.py:tiny --workdir=runs/rs \\
             --config.model.init_from=runs/rl/final
  2. SFT from the base model (an sft config, e.g. experiments/cold_start.py's preset):
     `model.init_from` = the *base* model (not the RL checkpoint; paper §2.3.3: the data
     "fine-tunes DeepSeek-V3-Base"), `data.corpus = ""`, `data.spec.paths = (the file above,)`,
     `data.template.name = "r1"` with the same chat format as the sampling template, and
     `stage = "rejection_sft"` (the paper trains two epochs on the ~800k samples).

Distillation uses the same runner with `--config.stage=distillation` and a teacher checkpoint as
`model.init_from`; the rows are tagged `source="distillation"`, and the SFT stage starts from the
smaller student (which re-tokenizes the text with its own tokenizer).

Choices the paper leaves open, and why:
- sampling temperature 0.6, top-p 0.95: the paper's recommended decoding for R1 and its evaluation
  setting; lower than the RL rollout temperature (1.0), so fewer samples are lost to incoherent or
  mixed-language text, yet the k samples of a prompt still differ (greedy would give k copies).
- k = 8 samples, at most 4 kept per prompt (1.5B preset): "sample multiple responses and retain
  only the correct ones"; the cap stops easy prompts from flooding the set, and identical samples
  are kept once.
- readability: language consistency >= 0.95 (clean CoT scores 1.0; the mixed-language corpus's
  mixed traces all score below 0.9), paragraphs up to 2,000 characters (about 400 words, far
  beyond a readable reasoning step), no ``` code fences in the CoT.
- 3 reasoning rows per non-reasoning row (paper: ~600k + ~200k), from the synthetic
  instruction corpus (the paper reuses DeepSeek-V3's SFT data; set `mix.paths` to real files).
- the prompt template must be the one the RL checkpoint was trained with ("r1" after a cold start).

Arguments (`--config=experiments/<file>.py:<arg>`):
  tiny                CPU, minutes: countdown + arithmetic problems, short completions.
  qwen2.5-math-1.5b   one host; set model.init_from to the RL stage's export.
"""
import ml_collections

from r1jax.data.config import data_config
from r1jax.train.configs import distributed_config


def rejection_base() -> ml_collections.ConfigDict:
  """Every field `run_rejection` reads (so `--config.a.b=v` overrides are checked)."""
  c = ml_collections.ConfigDict()
  c.kind = "rejection"
  c.stage = "rejection_sampling"  # or "distillation": only the rows' `source` tag differs
  c.seed = 0
  c.progress = True
  c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, expert=1, tensor=1))
  c.distributed = distributed_config()
  c.model = ml_collections.ConfigDict(dict(preset="", init_from="", overrides={}))
  c.tokenizer = ml_collections.ConfigDict(dict(path="", train_corpus="", vocab_size=1024, seed=0))
  c.data = data_config("rl")
  c.data.template.name = "r1"
  c.data.task.name = "countdown,arithmetic,knights_knaves"  # comma-separated offline tasks, n of each
  c.data.task.split = "train"
  c.data.max_prompt_len = 1024
  c.sampling = ml_collections.ConfigDict(dict(
      k=8, temperature=0.6, top_p=0.95, top_k=0, max_new_tokens=4096,
      stop_at_answer_end=True,  # the R1 format ends with the <answer> block
      batch_prompts=64,         # prompts per sampler call (x k rows)
      num_slots=0,              # decode slots (0 = all rows of a call at once)
      refill=False))
  c.rejection = ml_collections.ConfigDict(dict(
      reward="accuracy", reward_options={},  # the rule verifiers, routed by each row's task
      correct_threshold=0.5, keep_per_prompt=4, drop_truncated=True,
      num_prompts=0,       # 0 = every prompt
      shard_prompts=2048,  # prompts per resumable shard (0 = one shard)
      min_kept=1))         # fail (with stats.json written) below this many kept completions
  c.filters = ml_collections.ConfigDict(dict(
      language="en", min_language_consistency=0.95, max_paragraph_chars=2000, allow_code_blocks=False,
      require_think=True))
  c.mix = ml_collections.ConfigDict(dict(corpus="instruction", paths=(), ratio=3.0, seed=0))
  c.output = ml_collections.ConfigDict(dict(arrayrecord=False))  # also write <name>.arrayrecord
  c.compilation_cache = True
  c.compilation_cache_dir = ""
  return c


def get_config(arg: str = "tiny"):
  c = rejection_base()
  if arg == "tiny":
    c.model.preset = "tiny_dense"  # only for a smoke run; the pipeline sets model.init_from
    c.tokenizer.train_corpus = "pretraining,cold_start"
    c.data.task.name = "countdown,arithmetic"
    c.data.task.n = 64
    c.data.max_prompt_len = 256
    c.sampling.k = 4
    c.sampling.max_new_tokens = 256
    c.sampling.batch_prompts = 32
    c.rejection.keep_per_prompt = 2
    c.rejection.shard_prompts = 64
    c.filters.max_paragraph_chars = 1000
  elif arg == "qwen2.5-math-1.5b":
    c.model.init_from = ""  # the reasoning-RL stage's export (<rl workdir>/final)
    c.data.task.n = 8000
    c.data.max_prompt_len = 1024
    c.sampling.max_new_tokens = 4096
    c.sampling.batch_prompts = 64
    c.sampling.num_slots = 256
    c.sampling.refill = True  # long, uneven completions: refill finished slots
  else:
    raise ValueError(f"rejection_sft: unknown argument {arg!r} (tiny, qwen2.5-math-1.5b)")
  return c
