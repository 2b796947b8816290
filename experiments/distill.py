"""Distillation (paper §2.4 / §4.1): a smaller dense student learns R1's reasoning by plain SFT on
the teacher's curated outputs; no RL on the student.

    python -m r1jax --config=experiments/distill.py:qwen2.5-math-1.5b --workdir=runs/distill \
        --config.teacher=runs/r1/all_scenario_rl/final --config.student=/models/Qwen2.5-Math-1.5B

A two-stage pipeline (kind "pipeline"; each stage in <workdir>/<name>, resumable, skipped when done):
  teacher_samples   the teacher (`teacher`: the final R1 export) samples k completions per
                    reasoning prompt; only correct, readable ones are kept and mixed with
                    non-reasoning data (the rejection-sampling runner, experiments/rejection_sft.py,
                    with stage "distillation": rows are tagged source="distillation") ->
                    teacher_samples/data/rejection_sft.jsonl
  student           SFT of the student (`student`: an HF checkpoint dir) on that file; the data is
                    text, so the student re-tokenizes it with its own tokenizer -> student/final

Fields (override on the command line; the stages read them through "{config:field}"):
  teacher            HF-format teacher export (required).
  student            HF-format student checkpoint; "" = a random `student_preset` (CPU smoke only).
  student_preset     model preset of a random student, with `student_overrides` (e.g. fewer layers).
  student_tokenizer  "" = the student's own tokenizer; the tiny preset's random student shares the
                     teacher's ("{config:teacher}").

Arguments (`--config=experiments/<file>.py:<arg>`):
  tiny                CPU, minutes: a half-size tiny_dense student (2 layers, d_model 96) on the
                      teacher's countdown/arithmetic samples.
  qwen2.5-math-1.5b   the paper's smallest distilled model (DeepSeek-R1-Distill-Qwen-1.5B):
                      student = Qwen2.5-Math-1.5B. The paper curates ~800k samples (~600k
                      reasoning, ~200k non-reasoning) and fine-tunes for 2 epochs; here
                      3 x 100k prompts, at most 2 kept per prompt, 3 reasoning rows per
                      non-reasoning row, and completions capped so prompt + completion fit the
                      student's 4,096 positions (longer teacher outputs are dropped, not cut).
"""
import ml_collections

from r1jax.train.configs import distributed_config

SAMPLES = "{teacher_samples:dir}/data/rejection_sft.jsonl"

# How each stage reads the top-level fields.
_TEACHER = (("stage", "distillation"), ("model.init_from", "{config:teacher}"),
            # No random fallback: a missing teacher fails validation instead of distilling noise.
            ("model.preset", ""), ("tokenizer.path", ""), ("tokenizer.train_corpus", ""))
_STUDENT = (("stage", "distilled_student"), ("model.init_from", "{config:student}"),
            ("model.preset", "{config:student_preset}"), ("model.overrides", "{config:student_overrides}"),
            ("tokenizer.path", "{config:student_tokenizer}"), ("tokenizer.train_corpus", ""),
            ("data.corpus", ""), ("data.spec.paths", (SAMPLES,)), ("data.template.name", "r1"))


def get_config(arg: str = "tiny"):
  c = ml_collections.ConfigDict()
  c.kind = "pipeline"
  c.distributed = distributed_config()  # launch/ passes num_processes=0 on TPU VMs / SLURM
  c.stage = "distill"
  c.experiments_dir = ""  # "" = this repository's experiments/
  c.only = ""  # comma-separated stage names to run
  c.common_overrides = ()
  c.teacher = ""
  c.student = ""
  c.student_preset = ""
  c.student_overrides = {}
  c.student_tokenizer = ""
  if arg == "tiny":
    c.student_preset = "tiny_dense"
    c.student_overrides = {"n_layers": 2, "d_model": 96, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 256}
    c.student_tokenizer = "{config:teacher}"  # a random student has no tokenizer of its own
    teacher = _TEACHER + (("data.task.name", "countdown,arithmetic"), ("sampling.max_new_tokens", 256),
                          ("rejection.min_kept", 1))
    student = _STUDENT + (("data.batch_size", 16), ("data.seq_len", 256), ("train.steps", 80),
                          ("train.log_every", 10), ("train.checkpoint_every", 40),
                          ("train.logprob_chunk_size", 512), ("optim.learning_rate", 1e-3))
    c.stages = (("teacher_samples", "rejection_sft.py:tiny", teacher),
                ("student", "cold_start.py:tiny", student))
  elif arg == "qwen2.5-math-1.5b":
    teacher = _TEACHER + (
        ("data.task.name", "countdown,arithmetic,knights_knaves"), ("data.task.n", 100_000),
        ("data.max_prompt_len", 512), ("sampling.max_new_tokens", 3584), ("rejection.keep_per_prompt", 2),
        ("rejection.drop_truncated", True), ("mix.ratio", 3.0), ("rejection.min_kept", 1000))
    # ~800k rows x 2 epochs, ~2.5 rows per packed 4,096-token sequence, 64 sequences a step: ~10k steps.
    student = _STUDENT + (("data.batch_size", 64), ("data.seq_len", 4096), ("train.steps", 10_000),
                          ("train.checkpoint_every", 500), ("optim.learning_rate", 1e-5),
                          ("optim.warmup_steps", 100))
    c.stages = (("teacher_samples", "rejection_sft.py:qwen2.5-math-1.5b", teacher),
                ("student", "cold_start.py:qwen2.5-math-1.5b", student))
  else:
    raise ValueError(f"distill: unknown argument {arg!r} (tiny, qwen2.5-math-1.5b)")
  return c
