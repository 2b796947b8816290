"""R1 stage 4: RL for all scenarios (paper §2.3.4), GRPO at rollout temperature 0.7.

    python -m r1jax --config=experiments/all_scenario_rl.py:tiny --workdir=runs/all_scenario_rl \\
        --config.model.init_from=runs/rejection_sft/final \\
        --config.rewards.options.helpfulness_rm.path=runs/helpfulness_rm/final \\
        --config.rewards.options.safety_rm.path=runs/safety_rm/final

The prompt stream mixes reasoning prompts (`data.task.name` or `data.spec.paths`) with general
ones (`data.general`: the synthetic "general_prompts" corpus or files; task "general"). Rewards are
routed by each prompt's task (`rewards.options.<reward>.tasks`, see rewards/combine.py):
  reasoning  accuracy (rule-checked, routed per task to its verifier)
  general    helpfulness_rm: the pairwise RM on the final summary only (text after </think>)
             safety_rm:      the pointwise RM on the whole response, reasoning included
  every row  format (R1 format, summary allowed) and language consistency
The paper's sum: reward = reasoning (rule) + general (reward model + format) + language. A
component that a group's rows all share (e.g. format 0 on plain general answers) moves no
advantage: GRPO normalises within each prompt's group.

Both reward-model paths must be set (experiments/reward_model.py exports); the check at start
names the missing key.

Arguments (`--config=experiments/<file>.py:<arg>`):
  tiny                CPU: arithmetic prompts + synthetic general prompts (2:1), R1 template.
  qwen2.5-math-1.5b   one host; set model.init_from (the rejection-SFT export), the RM paths, and
                      real prompt files in data.spec.paths / data.general.paths.
"""
from r1jax.data import tasks
from r1jax.train.configs import grpo_base, qwen_math_grpo, tiny_grpo

# Tasks graded by the rule verifiers: math (also rows whose metadata names no task), code, and
# the offline reasoning tasks.
REASONING_TASKS = ("math", "code") + tuple(sorted(tasks.REASONING_TASKS))
GENERAL_TASKS = ("general",)


def get_config(arg: str = "tiny"):
  c = grpo_base("r1_stage4")  # the R1 objective, rollout temperature 0.7
  c.stage = "all_scenario_rl"
  c.data.template.name = "r1"
  c.data.general.corpus = "general_prompts"
  c.rewards.weights = {"accuracy": 1.0, "format": 1.0, "language": 1.0, "helpfulness_rm": 1.0, "safety_rm": 1.0}
  c.rewards.options = {
      "accuracy": {"tasks": REASONING_TASKS},
      "format": {"allow_summary": True},  # after a cold start: reasoning, summary, then the answer
      "helpfulness_rm": {"path": "", "tasks": GENERAL_TASKS},
      "safety_rm": {"path": "", "tasks": GENERAL_TASKS},
  }
  if arg == "tiny":
    tiny_grpo(c, learning_rate=5e-5, rollouts=10, eval_every=0)  # the pipeline sets model.init_from
    c.grpo.rollout_temperature = 0.7  # the paper's stage 4 (tiny_grpo uses it for every stage too)
    c.data.general.n = 256
  elif arg == "qwen2.5-math-1.5b":
    qwen_math_grpo(c, rollouts=100)  # model.init_from = the rejection-SFT stage's export
    c.data.general.n = 4000  # or data.general.paths: general prompts {prompt}
  else:
    raise ValueError(f"all_scenario_rl: unknown argument {arg!r} (tiny, qwen2.5-math-1.5b)")
  return c
