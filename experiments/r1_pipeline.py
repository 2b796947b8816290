"""The whole R1 recipe, chained (paper §2): a base model, R1-Zero, the four R1 stages, distillation
into a smaller dense student (and the student trained by RL alone), then one evaluation table.

    python -m r1jax --config=experiments/r1_pipeline.py:tiny --workdir=runs/r1

Stages (each in <workdir>/<name>, each resumable; finished stages are skipped on a re-run):
  base              SFT on the synthetic pretraining corpus (trains the tokenizer): the stand-in
                    for DeepSeek-V3-Base
  r1_zero           GRPO from base, R1-Zero template, accuracy + format rewards
  cold_start        SFT from base on readable long-CoT traces (reasoning, then a summary)
  reasoning_rl      GRPO from cold_start, + language-consistency reward
  rejection         rejection sampling from reasoning_rl (correct, readable) + non-reasoning data
  rejection_sft     SFT of the *base* model on that mix
  all_scenario_rl   GRPO from rejection_sft at temperature 0.7 (rule rewards; the learned
                    helpfulness/safety reward models are available as rewards but not chained yet)
  student_base      a smaller dense model pretrained like base (same tokenizer)
  student_distill   SFT of student_base on the teacher's curated outputs (the rejection data)
  student_rl        GRPO from student_base alone (the paper's "RL on the small model" baseline)
  evaluate          pass@1 / cons@k table, one column per checkpoint
"""
import ml_collections

_SFT_TINY = (("data.batch_size", 16), ("data.seq_len", 256), ("train.log_every", 10),
             ("train.checkpoint_every", 50), ("train.logprob_chunk_size", 512))
# Cold-start traces for arithmetic are ~170 tokens (<= 220): completions must fit one.
_RL_TINY = (("train.rollouts", 12), ("train.checkpoint_every", 4), ("train.eval_every", 0),
            ("grpo.max_completion_length", 224), ("data.task.name", "arithmetic"), ("data.template.name", "r1"),
            # After a cold start the R1 format puts a summary between </think> and <answer>.
            ("rewards.options", {"format": {"allow_summary": True}}))


def get_config(arg: str = "tiny"):
  c = ml_collections.ConfigDict()
  c.kind = "pipeline"
  c.stage = "r1_pipeline"
  c.experiments_dir = ""  # "" = this repository's experiments/
  c.only = ""  # comma-separated stage names to run (others must exist already)
  c.common_overrides = ()
  if arg != "tiny":
    raise ValueError(f"r1_pipeline: unknown preset {arg!r} (tiny)")
  rejection_data = ("{rejection:dir}/data/rejection_sft.jsonl",)
  c.stages = (
      ("base", "cold_start.py:tiny", _SFT_TINY + (
          ("stage", "base"), ("data.corpus", "pretraining"), ("data.corpus_size", 3000), ("train.steps", 200),
          ("optim.learning_rate", 2e-3), ("optim.warmup_steps", 20))),
      ("r1_zero", "r1_zero.py:tiny", _RL_TINY + (
          ("model.init_from", "{base}"), ("data.template.name", "r1_zero"), ("rewards.options", {}))),
      ("cold_start", "cold_start.py:tiny", _SFT_TINY + (
          ("model.init_from", "{base}"), ("train.steps", 150), ("optim.learning_rate", 1e-3))),
      ("reasoning_rl", "r1_zero.py:tiny", _RL_TINY + (
          ("stage", "reasoning_rl"), ("model.init_from", "{cold_start}"),
          ("rewards.weights", {"accuracy": 1.0, "format": 1.0, "language": 1.0}))),
      ("rejection", "rejection_sft.py:tiny", (
          ("model.init_from", "{reasoning_rl}"), ("data.task.name", "arithmetic,countdown"),
          ("sampling.max_new_tokens", 256), ("rejection.min_kept", 1))),
      ("rejection_sft", "cold_start.py:tiny", _SFT_TINY + (
          ("stage", "rejection_sft"), ("model.init_from", "{base}"), ("data.corpus", ""),
          ("data.spec.paths", rejection_data), ("train.steps", 80), ("optim.learning_rate", 1e-3))),
      ("all_scenario_rl", "r1_zero.py:tiny", _RL_TINY + (
          ("stage", "all_scenario_rl"), ("model.init_from", "{rejection_sft}"),
          ("grpo.rollout_temperature", 0.7))),
      ("student_base", "cold_start.py:tiny", _SFT_TINY + (
          ("stage", "student_base"), ("tokenizer.path", "{base:dir}/tokenizer.model"),
          ("model.overrides", {"n_layers": 2, "d_model": 96, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 256}),
          ("data.corpus", "pretraining"), ("data.corpus_size", 3000), ("train.steps", 200),
          ("optim.learning_rate", 2e-3), ("optim.warmup_steps", 20))),
      ("student_distill", "cold_start.py:tiny", _SFT_TINY + (
          ("stage", "student_distill"), ("model.init_from", "{student_base}"), ("data.corpus", ""),
          ("data.spec.paths", rejection_data), ("train.steps", 80), ("optim.learning_rate", 1e-3))),
      ("student_rl", "r1_zero.py:tiny", _RL_TINY + (
          ("stage", "student_rl"), ("model.init_from", "{student_base}"))),
      ("evaluate", "evaluate.py:tiny", (
          ("checkpoints", "base={base},r1-zero={r1_zero},cold-start={cold_start},reasoning-rl={reasoning_rl},"
                          "rejection-sft={rejection_sft},r1={all_scenario_rl},student-distilled={student_distill},"
                          "student-rl-only={student_rl}"),
          ("eval.tasks", "arithmetic,countdown"), ("eval.n", 32), ("eval.k", 4), ("eval.max_new_tokens", 256))),
  )
  return c
