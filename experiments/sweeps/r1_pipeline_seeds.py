"""The whole tiny R1 recipe (experiments/r1_pipeline.py:tiny) over 3 seeds, one pipeline per seed.

    python -m r1jax.sweep --sweep=experiments/sweeps/r1_pipeline_seeds.py --workdir=runs/r1_seeds
    python -m r1jax.eval.seeds runs/r1_seeds/seed=0 runs/r1_seeds/seed=1 runs/r1_seeds/seed=2

The pipeline seed offsets every stage's seeds (held-out problems stay fixed). Each pipeline takes
~14 min on a 2-core CPU; a re-run skips finished seeds and resumes the others stage by stage. The
table holds each checkpoint's pass@1 from the evaluate stage's table (<run>/evaluate/eval_results.json)
and reasoning RL's last held-out pass@1; r1jax.eval.seeds then gives mean ± SE and paired gains.
"""
from r1jax import sweep


def get_sweep():
  return dict(
      name="r1_pipeline_seeds",
      config="experiments/r1_pipeline.py:tiny",
      sweep=sweep.product(("seed", [0, 1, 2])),
      metrics=("base/pass@1", "r1-zero/pass@1", "cold-start/pass@1", "reasoning-rl/pass@1", "rejection-sft/pass@1",
               "r1/pass@1", "student-distilled/pass@1", "student-rl-only/pass@1", "reasoning_rl/eval/pass@1"),
  )
