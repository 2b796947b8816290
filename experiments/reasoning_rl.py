"""R1 stage 2: reasoning-oriented RL after the cold start (paper §2.3.2).

The same large-scale GRPO as R1-Zero, but from the cold-start checkpoint and with the R1 template
(`<think>` reasoning, then a summary, then `<answer>`). Rewards (summed, weight 1 each):
  accuracy   rule-checked final answer (per-task verifiers),
  format     the R1 layout; `allow_summary` accepts the summary the cold start taught between
             `</think>` and `<answer>`,
  language   share of chain-of-thought words in the target language (the paper's fix for the
             language mixing R1-Zero showed; it costs a little accuracy and buys readability).

    python -m r1jax --config=experiments/reasoning_rl.py:qwen2.5-math-1.5b --workdir=runs/reasoning_rl \
        --config.model.init_from=runs/cold_start/final

The export (`<workdir>/final`) is what stage 3 (experiments/rejection_sft.py) samples from.

Arguments (`--config=experiments/<file>.py:<arg>`):
  tiny                CPU smoke run: a random tiny model unless model.init_from names a cold-start
                      export (the pipeline sets it); offline 2-digit additions, whose
                      cold-start traces (~90 tokens, ~155 with a "Wait, let me re-check"
                      detour) fit 192-token completions; accuracy-dominated rewards.
  qwen2.5-math-1.5b   one host; model.init_from = the cold-start export. Paper hyperparameters
                      (Nature version): lr 3e-6, beta 0.001 (k3 KL in the loss), G = 16,
                      32 questions per step, T = 1.0, clip eps 10, 16 minibatches per rollout,
                      reference reset every 400 steps. The paper's 32k-token completions do not
                      fit Qwen2.5-Math-1.5B's 4,096 positions, so prompt 512 + completion 3,584.
"""
from r1jax.train.configs import grpo_base, qwen_math_grpo, tiny_grpo

# After a cold start the R1 format puts a summary between </think> and <answer>.
REWARD_WEIGHTS = {"accuracy": 1.0, "format": 1.0, "language": 1.0}
REWARD_OPTIONS = {"format": {"allow_summary": True}}


def get_config(arg: str = "tiny"):
  c = grpo_base("r1")
  c.stage = "reasoning_rl"
  c.data.template.name = "r1"
  c.rewards.weights = dict(REWARD_WEIGHTS)
  c.rewards.options = dict(REWARD_OPTIONS)
  c.sampling.stop_at_answer_end = True  # the R1 format ends with the <answer> block
  if arg == "tiny":
    # A tiny_dense smoke run unless the pipeline sets model.init_from = the cold start. Held-out
    # pass@1 every 5 rollouts (the plot).
    tiny_grpo(c, learning_rate=5e-5, rollouts=20, eval_every=5)
  elif arg == "qwen2.5-math-1.5b":
    # grpo_base("r1") holds the paper's lr 3e-6, beta 0.001, G 16, 32 x 16 prompts, T 1.0, clip
    # eps 10, ref reset every 400 steps; only the length is capped by the model's context.
    qwen_math_grpo(c, rollouts=500)  # 8,000 optimizer steps (16 per rollout); init_from = cold start
  else:
    raise ValueError(f"reasoning_rl: unknown argument {arg!r} (tiny, qwen2.5-math-1.5b)")
  return c
