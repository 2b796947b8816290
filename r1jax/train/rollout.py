"""One GRPO rollout: G sampled completions per prompt, graded, optionally filled by dynamic sampling.

Dynamic sampling (DAPO, arXiv 2503.14476 §3.2): a group whose G rewards are all equal has advantage
0 and teaches nothing. With `dynamic=True`, `fill_rollout` keeps drawing prompt batches and keeps
only groups whose rewards differ until the rollout holds `num_groups` of them, at most `max_draws`
draws. A rollout still short after the last draw is topped up with uninformative groups (advantage
0: they cost compute, not correctness), and that is counted (`dynamic/filled_uninformative`) rather
than failing a long run; the draws, the prompts drawn and the informative fraction are counted too.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from r1jax.rl.advantages import all_equal_groups
from r1jax.sampling.sampler import GenerationResult

# Reward metrics that count things: summed over draws (the others are per-draw means, averaged).
# The failure counters of the graders (math: pool_failures, errors, timeouts) are counts too.
_COUNT_SUFFIXES = ("/failed", "/nonfinite", "/rows", "unrouted",
                   "/pool_failures", "/errors", "/timeouts", "/timeouts_hard",
                   "/no_answer", "/no_parse", "/bad_gold", "/too_long", "/graded")


def is_count(key: str) -> bool:
  """Whether a reward metric (prefixed "accuracy/math/errors" or not "errors") counts rows."""
  return ("/" + key).endswith(_COUNT_SUFFIXES)


@dataclasses.dataclass
class Rollout:
  """P prompts and their G completions each; rows are prompt-major (row i*G + j = sample j of i)."""
  prompts: list          # [P] prompt id lists
  answers: list          # [P]
  metadata: list         # [P]
  gen: GenerationResult  # [N = P*G] rows
  texts: list            # [N] decoded completions
  rewards: np.ndarray    # [N] float32 weighted total
  components: dict       # reward name -> [N] float32 unweighted scores
  reward_metrics: dict   # the reward function's batch metrics

  @property
  def num_groups(self) -> int:
    return len(self.prompts)


def informative_groups(rewards: np.ndarray, group_ids: np.ndarray, num_groups: int) -> np.ndarray:
  """[num_groups] bool: the group's rewards are not all equal (`rl.advantages.all_equal_groups`,
  the rule that gives such groups advantage 0)."""
  return ~np.asarray(all_equal_groups(np.asarray(rewards, np.float32), np.asarray(group_ids, np.int32), num_groups))


def _pad_cols(x: np.ndarray, width: int) -> np.ndarray:
  return x if x.shape[1] == width else np.pad(x, ((0, 0), (0, width - x.shape[1])))


def take_groups(r: Rollout, groups: Sequence[int]) -> Rollout:
  """The rollout restricted to `groups` (in that order), renumbered 0..len(groups)-1."""
  groups = [int(g) for g in groups]
  g = r.gen
  per_group = [np.flatnonzero(np.asarray(g.prompt_index) == old) for old in groups]  # row ids of each group
  rows = np.concatenate(per_group) if groups else np.zeros(0, int)
  new_index = np.repeat(np.arange(len(groups), dtype=np.int32), [len(p) for p in per_group])
  gen = GenerationResult(
      tokens=g.tokens[rows], lengths=g.lengths[rows], finish_reasons=[g.finish_reasons[i] for i in rows],
      logprobs=g.logprobs[rows], sampling_logprobs=None if g.sampling_logprobs is None else g.sampling_logprobs[rows],
      prompt_index=new_index, stats=g.stats)
  return Rollout(prompts=[r.prompts[i] for i in groups], answers=[r.answers[i] for i in groups],
                 metadata=[r.metadata[i] for i in groups], gen=gen, texts=[r.texts[i] for i in rows],
                 rewards=r.rewards[rows], components={k: v[rows] for k, v in r.components.items()},
                 reward_metrics=r.reward_metrics)


def concat(parts: Sequence[Rollout], reward_metrics: Mapping[str, float] | None = None) -> Rollout:
  """Parts back to back (group ids offset); `reward_metrics` replaces the parts' metrics."""
  width = max(p.gen.tokens.shape[1] for p in parts)
  offsets = np.cumsum([0] + [p.num_groups for p in parts])[:-1]
  sampling = [p.gen.sampling_logprobs for p in parts]
  gen = GenerationResult(
      tokens=np.concatenate([_pad_cols(p.gen.tokens, width) for p in parts]),
      lengths=np.concatenate([p.gen.lengths for p in parts]),
      finish_reasons=[f for p in parts for f in p.gen.finish_reasons],
      logprobs=np.concatenate([_pad_cols(p.gen.logprobs, width) for p in parts]),
      sampling_logprobs=None if any(s is None for s in sampling) else np.concatenate(
          [_pad_cols(s, width) for s in sampling]),
      prompt_index=np.concatenate([np.asarray(p.gen.prompt_index) + o for p, o in zip(parts, offsets)]).astype(np.int32),
      stats=parts[0].gen.stats)
  names = parts[0].components.keys()
  return Rollout(prompts=[x for p in parts for x in p.prompts], answers=[x for p in parts for x in p.answers],
                 metadata=[x for p in parts for x in p.metadata], gen=gen, texts=[t for p in parts for t in p.texts],
                 rewards=np.concatenate([p.rewards for p in parts]),
                 components={k: np.concatenate([p.components[k] for p in parts]) for k in names},
                 reward_metrics=dict(parts[0].reward_metrics if reward_metrics is None else reward_metrics))


def merge_reward_metrics(metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
  """Reward metrics of several draws: counts summed, means averaged over the draws holding them."""
  keys = {k for m in metrics for k in m}
  out = {}
  for k in sorted(keys):
    vals = [float(m[k]) for m in metrics if k in m]
    out[k] = float(np.sum(vals)) if is_count(k) else float(np.mean(vals))
  return out


def fill_rollout(draw: Callable[[], Rollout], num_groups: int, *, dynamic: bool = False,
                 max_draws: int = 1) -> tuple[Rollout, dict[str, float]]:
  """One rollout of `num_groups` groups from `draw()` calls (each one prompt batch, sampled + graded).

  Without dynamic sampling: exactly one draw. With it: informative groups of each draw, in order,
  until `num_groups` (the surplus of the last draw is dropped), then uninformative groups if short.
  Reward metrics describe every sampled row (the policy's accuracy), not only the kept ones.
  """
  if not dynamic:
    r = draw()
    if r.num_groups != num_groups:
      raise ValueError(f"fill_rollout: a draw gave {r.num_groups} groups, the rollout needs {num_groups}")
    return r, {}
  if max_draws < 1:
    raise ValueError(f"fill_rollout: max_draws must be >= 1, got {max_draws}")
  kept, spare, all_metrics = [], [], []
  n_kept = drawn_groups = informative = draws = 0
  while n_kept < num_groups and draws < max_draws:
    r = draw()
    draws += 1
    drawn_groups += r.num_groups
    all_metrics.append(r.reward_metrics)
    good = informative_groups(r.rewards, np.asarray(r.gen.prompt_index), r.num_groups)
    informative += int(good.sum())
    take = np.flatnonzero(good)[:num_groups - n_kept]
    if take.size:
      kept.append(take_groups(r, take))
      n_kept += int(take.size)
    spare.append(take_groups(r, np.flatnonzero(~good)))
  filled = 0
  for s in spare:
    if n_kept >= num_groups:
      break
    need = min(num_groups - n_kept, s.num_groups)
    if need:
      kept.append(take_groups(s, range(need)))
      n_kept += need
      filled += need
  rollout = concat(kept, reward_metrics=merge_reward_metrics(all_metrics))
  stats = {"dynamic/draws": float(draws), "dynamic/prompts_drawn": float(drawn_groups),
           "dynamic/informative_fraction": informative / max(drawn_groups, 1),
           "dynamic/filled_uninformative": float(filled)}
  return rollout, stats
