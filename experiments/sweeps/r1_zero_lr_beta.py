"""R1-Zero on the tiny task: learning rate x KL weight (2 x 2 runs), from the demo pipeline's base.

    # the base model first (the pipeline's first stage, ~5 min on a CPU):
    python -m r1jax --config=experiments/r1_pipeline.py:tiny --workdir=runs/r1 --config.only=base
    python -m r1jax.sweep --sweep=experiments/sweeps/r1_zero_lr_beta.py --workdir=runs/sweep_lr_beta

Runs go in runs/sweep_lr_beta/lr=1e-05,beta=0.0 ... lr=5e-05,beta=0.001; the table
(runs/sweep_lr_beta/sweep.md, .csv, .png) holds each run's last held-out pass@1 (every 5 rollouts),
mean reward and KL to the reference.
"""
from r1jax import sweep


def get_sweep():
  return dict(
      name="r1_zero_lr_beta",
      config="experiments/r1_zero.py:tiny",
      sweep=sweep.product(("optim.learning_rate", [1e-5, 5e-5]), ("grpo.beta", [0.0, 0.001])),
      fixed={"model.init_from": "runs/r1/base/final"},
      names={"optim.learning_rate": "lr", "grpo.beta": "beta"},
      metrics=("eval/pass@1", "reward/mean", "train/kl_mean", "rollout/response_length/mean"),
  )
