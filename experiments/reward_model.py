"""Learned reward models for all-scenario RL (paper §2.3.4): helpfulness (pairwise) or safety (pointwise).

    python -m r1jax --config=experiments/reward_model.py:tiny --workdir=runs/helpfulness_rm
    python -m r1jax --config=experiments/reward_model.py:tiny --workdir=runs/safety_rm \\
        --config.rm.kind=safety --config.data.corpus=safety

`rm.kind`:
  helpfulness  pairwise Bradley–Terry on (prompt, chosen, rejected), scored on the final summary
               only (the text after </think>), as the reward reads it in RL.
  safety       pointwise binary classifier on (prompt, response, label 1 = safe), scored on the
               whole response, reasoning included.
`data.kind` follows `rm.kind` (preference / pointwise) when left empty. The export,
<workdir>/final, is what `rewards.options.helpfulness_rm.path` / `safety_rm.path` of
experiments/all_scenario_rl.py point at.

Arguments (`--config=experiments/<file>.py:<arg>`):
  tiny                CPU, under a minute: tiny_dense from scratch (tokenizer trained in-process) on
                      the synthetic preference / safety corpus, 20% held out.
  qwen2.5-math-1.5b   one host: the backbone from `model.init_from` (a policy export; the paper
                      starts its reward models from the policy architecture), JSONL records in
                      `data.spec.paths` ({prompt, chosen, rejected} or {prompt, response, label}).
                      Paper, as we read its methods section: 66k helpfulness pairs, batch 256,
                      lr 6e-6, one epoch, sequences up to 8,192 tokens; here 64 pairs per step at
                      4,096 tokens (the step has no gradient accumulation), lr 6e-6, ~one epoch.
"""
import ml_collections

from r1jax.data.config import data_config
from r1jax.train.configs import sft_base


def reward_model_base() -> ml_collections.ConfigDict:
  """Every field `run_reward_model` reads (so `--config.a.b=v` overrides are checked)."""
  c = sft_base()  # mesh, model, tokenizer, optim, seed, compilation cache, distributed
  c.kind = "reward_model"
  c.stage = "reward_model"
  c.rm = ml_collections.ConfigDict(dict(
      kind="helpfulness",   # helpfulness | safety
      eval_fraction=0.1,    # held out from the training records (when eval_paths is empty)
      eval_paths=(),        # or separate held-out files
      eval_every=0,         # held-out evaluation every N steps (0: only at the end)
      eval_batch_size=32))
  c.data = data_config("preference")
  c.data.kind = ""  # "" = follow rm.kind (preference for helpfulness, pointwise for safety)
  c.data.corpus = ""  # a synthetic corpus (data.tasks.corpora): preference / safety
  c.data.corpus_size = 0
  c.data.template.name = "chat"  # = rewards.model.DEFAULT_TEMPLATE; saved with the export
  c.data.template.chat_format = "plain"
  c.optim.learning_rate = 6e-6
  c.train = ml_collections.ConfigDict(dict(steps=1000, log_every=10, checkpoint_every=200, keep_checkpoints=2,
                                           progress=True))
  return c


def get_config(arg: str = "tiny"):
  c = reward_model_base()
  if arg == "tiny":
    c.model.preset = "tiny_dense"
    c.tokenizer.train_corpus = "pretraining,cold_start,preference,safety"
    c.data.corpus = "preference"
    c.data.corpus_size = 400
    c.data.batch_size = 16
    c.data.max_len = 128  # safety examples: <= 100 tokens (own tokenizer), <= 122 (the pipeline's base)
    c.rm.eval_fraction = 0.2
    c.rm.eval_every = 20
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 5
    c.train.steps = 40
    c.train.log_every = 5
    c.train.checkpoint_every = 20
  elif arg == "qwen2.5-math-1.5b":
    c.model.preset = ""
    c.model.init_from = ""  # HF-format policy checkpoint (e.g. the rejection-SFT stage's export)
    c.model.overrides = {"remat": "full"}
    c.data.spec.paths = ()  # JSONL preference pairs (helpfulness) or labelled responses (safety)
    c.data.batch_size = 64
    c.data.max_len = 4096
    c.rm.eval_fraction = 0.02
    c.rm.eval_every = 200
    c.rm.eval_batch_size = 16
    c.optim.learning_rate = 6e-6
    c.optim.warmup_steps = 20
    c.train.steps = 1000  # ~ one epoch of 66k pairs at 64 per step
  else:
    raise ValueError(f"reward_model: unknown argument {arg!r} (tiny, qwen2.5-math-1.5b)")
  return c
