"""Fused chunked GRPO loss vs the naive full-logits loss: step time and compiled temp memory.

One step = value_and_grad w.r.t. (hidden, head) of grpo_loss(log-probs of B*T completion
tokens) with the R1 config (k3 KL to fixed reference log-probs). "fused" computes the log-probs
with r1jax.rl.token_logprobs (scan over token chunks, custom VJP); the peer, measured in the same
run, is "naive": the same loss on naive_token_logprobs, which materialises [B, T, V] logits.
Memory is XLA's compiled `memory_analysis().temp_size_in_bytes` (what the program needs beyond
its arguments and outputs). A configuration whose naive program would not fit in this machine's
free RAM is compiled and measured for memory, but not run.

  venv/bin/python benchmarks/loss.py            # B*T in {4k, 16k}, V in {32k, 152k}, d=1024
  venv/bin/python benchmarks/loss.py --small    # CPU-sized: B*T in {512, 2k}, V in {4k, 16k}, d=128
  venv/bin/python benchmarks/loss.py --memory-only   # compile and measure memory, run nothing

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from r1jax.rl import GRPOConfig, grpo_loss, naive_token_logprobs, r1_recipe, token_logprobs

FULL = dict(tokens=[4096, 16384], vocab=[32768, 152064], dim=1024, chunk_size=1024)
SMALL = dict(tokens=[512, 2048], vocab=[4096, 16384], dim=128, chunk_size=256)


def _step_fn(logprob_fn, cfg: GRPOConfig):
  def loss(hidden, head, targets, old, ref, advantages, mask):
    logp = logprob_fn(hidden, head, targets)
    return grpo_loss(logp, old, ref, advantages, mask, cfg)[0]
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _inputs(tokens: int, vocab: int, dim: int, dtype, seed: int = 0):
  length = min(1024, tokens)
  batch = tokens // length
  rng = np.random.default_rng(seed)
  hidden = jnp.asarray(rng.normal(size=(batch, length, dim)), dtype)
  head = jnp.asarray(rng.normal(size=(dim, vocab)) / np.sqrt(dim), dtype)
  targets = jnp.asarray(rng.integers(0, vocab, size=(batch, length)), jnp.int32)
  # Log-probs of a random head are about -log V; old/ref are nearby, as in training.
  base = -np.log(vocab) + rng.normal(0, 0.5, size=(batch, length))
  old = jnp.asarray(base + rng.normal(0, 0.1, size=base.shape), jnp.float32)
  ref = jnp.asarray(base + rng.normal(0, 0.1, size=base.shape), jnp.float32)
  advantages = jnp.asarray(rng.normal(size=batch), jnp.float32)
  lengths = rng.integers(length // 2, length + 1, size=batch)
  mask = jnp.asarray(np.arange(length)[None, :] < lengths[:, None])
  return hidden, head, targets, old, ref, advantages, mask


def _abstract(args):
  return [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]


def _available_bytes() -> int:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
  except (ValueError, OSError):
    return 0


def _measure(name, step, args, iters, run):
  t0 = time.perf_counter()
  compiled = step.lower(*_abstract(args)).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  out = {"path": name, "compile_s": round(compile_s, 3), "temp_bytes": int(mem.temp_size_in_bytes),
         "argument_bytes": int(mem.argument_size_in_bytes),
         "output_bytes": int(mem.output_size_in_bytes)}
  needed = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
  if not run:
    return out, None
  available = _available_bytes()
  if jax.default_backend() == "cpu" and available and needed > 0.8 * available:
    out["skipped"] = f"needs {needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB free"
    return out, None
  result = jax.block_until_ready(compiled(*args))  # warm-up
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  out["step_s_median"] = round(statistics.median(times), 5)
  out["step_s_min"] = round(min(times), 5)
  out["tokens_per_s"] = round(args[0].shape[0] * args[0].shape[1] / statistics.median(times), 1)
  return out, result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--small", action="store_true", help="CPU-sized shapes")
  parser.add_argument("--tokens", type=int, nargs="+", help="B*T values (override the preset)")
  parser.add_argument("--vocab", type=int, nargs="+", help="V values (override the preset)")
  parser.add_argument("--dim", type=int, help="hidden size d (override the preset)")
  parser.add_argument("--chunk-size", type=int, help="tokens per fused chunk (override)")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                      help="hidden/head dtype (logits are fp32 either way)")
  parser.add_argument("--iters", type=int, default=3)
  parser.add_argument("--memory-only", action="store_true", help="compile only, run nothing")
  args = parser.parse_args()

  sizes = dict(SMALL if args.small else FULL)
  sizes.update({k: v for k, v in (("tokens", args.tokens), ("vocab", args.vocab),
                                  ("dim", args.dim), ("chunk_size", args.chunk_size)) if v})
  dtype = jnp.dtype(args.dtype)
  cfg = r1_recipe()
  fused = _step_fn(lambda h, w, t: token_logprobs(h, w, t, chunk_size=sizes["chunk_size"]), cfg)
  naive = _step_fn(naive_token_logprobs, cfg)

  results = []
  for tokens in sizes["tokens"]:
    for vocab in sizes["vocab"]:
      inputs = _inputs(tokens, vocab, sizes["dim"], dtype)
      row = {"tokens": tokens, "vocab": vocab, "dim": sizes["dim"]}
      fused_m, fused_out = _measure("fused", fused, inputs, args.iters, not args.memory_only)
      naive_m, naive_out = _measure("naive", naive, inputs, args.iters, not args.memory_only)
      row["fused"], row["naive"] = fused_m, naive_m
      row["temp_bytes_ratio_naive_over_fused"] = round(
          naive_m["temp_bytes"] / max(fused_m["temp_bytes"], 1), 2)
      if "step_s_median" in fused_m and "step_s_median" in naive_m:
        row["time_ratio_naive_over_fused"] = round(
            naive_m["step_s_median"] / fused_m["step_s_median"], 3)
        (loss_f, grads_f), (loss_n, grads_n) = fused_out, naive_out
        row["max_abs_diff"] = {
            "loss": float(jnp.abs(loss_f - loss_n)),
            "d_hidden": float(jnp.max(jnp.abs(grads_f[0].astype(jnp.float32)
                                              - grads_n[0].astype(jnp.float32)))),
            "d_head": float(jnp.max(jnp.abs(grads_f[1].astype(jnp.float32)
                                            - grads_n[1].astype(jnp.float32))))}
      results.append(row)
      print(json.dumps(row), flush=True, file=sys.stderr)

  report = {
      "benchmark": "grpo_loss fused vs naive (value_and_grad w.r.t. hidden and head)",
      "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()[:1]],
      "num_devices": jax.device_count(), "cpu_count": os.cpu_count(),
      "platform": platform.platform(), "jax": jax.__version__,
      "dtype": args.dtype, "chunk_size": sizes["chunk_size"], "iters": args.iters,
      "memory_only": args.memory_only, "results": results,
  }
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()
