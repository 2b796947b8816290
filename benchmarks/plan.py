"""Memory and communication plan of a preset on a mesh, from the compiled programs, without weights.

AOT-lowers and compiles the GRPO update (one minibatch, gradient accumulation included) and the
sampler's decode loop on abstract arrays (`jax.ShapeDtypeStruct` carrying their shardings), so a
671B model plans on a laptop: nothing is allocated. Per case it prints one JSON line with
`preset, mesh, layers, compile_s, bytes_per_device_params, bytes_per_device_opt,
bytes_per_device_temp, all_to_all_ops, all_gather_ops` (memory from the compiled module's memory
analysis, collectives counted in its HLO), and `--depths` adds a line comparing compile time at L
and 2L layers (with `scan_layers` roughly flat; a Python loop over layers grows with depth).

    python benchmarks/plan.py --preset qwen2.5-math-1.5b --mesh fsdp=8 --rows 16 --seq 1024
    python benchmarks/plan.py --preset deepseek-v3 --mesh fsdp=32,expert=8 --rows 256 --seq 4096 \\
        --micro-batch 256 --hbm-gib 95     # a v5p-256 slice (95 GiB of HBM per chip)
    python benchmarks/plan.py --preset tiny_moe --mesh expert=8 --depths

CPU devices are virtual (`--xla_force_host_platform_device_count`, set from the mesh size before
jax is imported); the per-device numbers are those of the partitioned program, which is what each
accelerator would hold (CPU and TPU layouts differ a little; fusion decisions differ more).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import time


def parse_mesh(text: str) -> dict[str, int]:
  axes = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
  for part in filter(None, text.split(",")):
    name, _, size = part.partition("=")
    if name not in axes or not size.lstrip("-").isdigit():
      raise SystemExit(f"--mesh: bad entry {part!r}; expected axis=size with axis in {sorted(axes)}")
    axes[name] = int(size)
  return axes


def count_ops(hlo: str, op: str) -> int:
  """Instructions of kind `op` in an HLO module's text (async start forms counted once)."""
  return len(re.findall(rf"(?<![\w%.-]){re.escape(op)}(?:-start)?\(", hlo))  # not %names or operands


def shard_bytes(tree) -> int:
  """Bytes one device holds of the abstract arrays in `tree` (each sharded by its `.sharding`)."""
  import jax

  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shape) * leaf.dtype.itemsize
  return total


def abstract_model(cfg, mesh, *filters):
  """(graphdef, *states): the model split by `filters` (none: one state, as the sampler takes it),
  every state an abstract tree placed in its mesh shardings."""
  import jax
  from flax import nnx

  from r1jax.models.transformer import Transformer
  from r1jax.parallel.sharding import state_shardings

  graphdef, *states = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), *filters)

  def place(state):
    shardings = state_shardings(state, mesh)
    return jax.tree.map(lambda v, s: v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s)), state,
                        shardings, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return (graphdef, *(place(s) for s in states))


def _timed_compile(fn, *args, **kwargs):
  t = time.perf_counter()
  compiled = fn.lower(*args, **kwargs).compile()
  return compiled, time.perf_counter() - t


def _memory(compiled) -> dict[str, int]:
  m = compiled.memory_analysis()
  return {"argument": int(m.argument_size_in_bytes), "output": int(m.output_size_in_bytes),
          "alias": int(m.alias_size_in_bytes), "temp": int(m.temp_size_in_bytes)}


def plan_update(cfg, mesh, *, rows: int, seq: int, micro_batch: int, chunk: int) -> dict:
  """Compiles one GRPO update (whole minibatch of `rows` sequences of `seq` tokens)."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from jax.sharding import NamedSharding, PartitionSpec as P

  from r1jax.parallel.sharding import batch_sharding
  from r1jax.rl.config import GRPOConfig
  from r1jax.train.grpo import make_update_step
  from r1jax.train.state import TrainState, make_optimizer, optimizer_shardings

  graphdef, params, extra = abstract_model(cfg, mesh, nnx.Param, ...)
  tx: optax.GradientTransformation = make_optimizer({"learning_rate": 3e-6, "warmup_steps": 1, "total_steps": 10})
  replicated = NamedSharding(mesh, P())
  opt_state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                           jax.eval_shape(tx.init, params), optimizer_shardings(tx, params))
  state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated), params=params, extra=extra,
                     opt_state=opt_state, rng=jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated))
  b2, b1 = batch_sharding(mesh, 2), batch_sharding(mesh, 1)
  mat = lambda dt: jax.ShapeDtypeStruct((rows, seq), dt, sharding=b2)  # noqa: E731
  batch = {k: mat(jnp.int32) for k in ("tokens", "targets", "positions", "segment_ids")}
  batch.update({k: mat(jnp.float32) for k in ("completion_mask", "old_logprobs", "ref_logprobs")})
  batch["advantages"] = jax.ShapeDtypeStruct((rows,), jnp.float32, sharding=b1)
  batch["truncated"] = jax.ShapeDtypeStruct((rows,), jnp.bool_, sharding=b1)
  gcfg = GRPOConfig(micro_batch_size=micro_batch, logprob_chunk_size=chunk, max_completion_length=seq,
                    prompts_per_step=1, num_generations=rows, num_minibatches=1)
  step = jax.jit(make_update_step(graphdef, tx, gcfg, router_bias_rate=1e-3 if cfg.router_bias else 0.0),
                 donate_argnums=0)
  with jax.set_mesh(mesh):
    compiled, seconds = _timed_compile(step, state, batch)
  mem = _memory(compiled)
  return {"case": "grpo_update", "rows": rows, "seq": seq, "micro_batch": micro_batch, "compile_s": seconds,
          "bytes_per_device_params": shard_bytes(params) + shard_bytes(extra),
          "bytes_per_device_opt": shard_bytes(opt_state), "bytes_per_device_temp": mem["temp"],
          "bytes_per_device_batch": shard_bytes(batch),
          "bytes_per_device_peak": mem["argument"] + mem["temp"] + mem["output"] - mem["alias"],
          **_collectives(compiled)}


def plan_decode(cfg, mesh, *, rows: int, seq: int, max_new: int) -> dict:
  """Compiles the sampler's decode loop for `rows` slots of `seq` cached tokens (prompt + new)."""
  import jax
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P

  from r1jax.parallel.sharding import BATCH_AXES
  from r1jax.sampling.cache import empty_cache
  from r1jax.sampling.params import StaticSampling
  from r1jax.sampling.programs import decode, empty_state

  graphdef, params = abstract_model(cfg, mesh)  # one tree (weights and router biases), as the sampler has it
  # As the Sampler does: slots over the batch axes, P(axes) on every [B, ...] buffer.
  shards = math.prod(mesh.shape[a] for a in BATCH_AXES)
  bs = NamedSharding(mesh, P(BATCH_AXES)) if rows % shards == 0 else NamedSharding(mesh, P())

  def place(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=bs), tree)

  cache = place(jax.eval_shape(lambda: empty_cache(cfg, rows, seq)))
  state = place(jax.eval_shape(lambda: empty_state(rows, max_new)))
  knobs = {"temperature": np.float32(0.6), "top_p": np.float32(0.95), "seed": np.uint32(0),
           "stop_ids": np.full((4,), -1, np.int32), "threshold": np.int32(rows)}
  with jax.set_mesh(mesh):
    compiled, seconds = _timed_compile(decode, params, cache, state, knobs, graphdef=graphdef,
                                       static=StaticSampling(False, 0, True, False), batch_sharding=bs)
  mem = _memory(compiled)
  return {"case": "decode", "rows": rows, "seq": seq, "compile_s": seconds,
          "bytes_per_device_params": shard_bytes(params), "bytes_per_device_opt": 0,
          "bytes_per_device_temp": mem["temp"], "bytes_per_device_cache": shard_bytes(cache),
          "bytes_per_device_peak": mem["argument"] + mem["temp"] + mem["output"] - mem["alias"],
          **_collectives(compiled)}


def _collectives(compiled) -> dict[str, int]:
  hlo = compiled.as_text()
  return {"all_to_all_ops": count_ops(hlo, "all-to-all") + count_ops(hlo, "ragged-all-to-all"),
          "all_gather_ops": count_ops(hlo, "all-gather"), "all_reduce_ops": count_ops(hlo, "all-reduce"),
          "reduce_scatter_ops": count_ops(hlo, "reduce-scatter")}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--preset", default="tiny_moe")
  ap.add_argument("--mesh", default="fsdp=8", help="axis=size,... over data, fsdp, expert, tensor")
  ap.add_argument("--layers", type=int, default=0, help="override n_layers (0: the preset's)")
  ap.add_argument("--rows", type=int, default=16, help="sequences per GRPO minibatch (and decode slots)")
  ap.add_argument("--seq", type=int, default=512, help="tokens per training row (prompt + completion)")
  ap.add_argument("--micro-batch", type=int, default=0, help="grpo.micro_batch_size (0: whole minibatch)")
  ap.add_argument("--chunk", type=int, default=1024, help="grpo.logprob_chunk_size")
  ap.add_argument("--decode-seq", type=int, default=0, help="cache length of the decode case (0: --seq)")
  ap.add_argument("--max-new", type=int, default=256, help="decode state width")
  ap.add_argument("--cases", default="grpo_update,decode")
  ap.add_argument("--remat", default="", help="ModelConfig.remat override")
  ap.add_argument("--scan", default="", choices=["", "true", "false"], help="ModelConfig.scan_layers override")
  ap.add_argument("--moe-backend", default="", help="ModelConfig.moe_backend override")
  ap.add_argument("--param-dtype", default="", help="ModelConfig.param_dtype override (dtype follows)")
  ap.add_argument("--depths", action="store_true", help="also compare GRPO-update compile time at L and 2L layers")
  ap.add_argument("--hbm-gib", type=float, default=0.0, help="per-device memory to check the plan against")
  args = ap.parse_args(argv)
  axes = parse_mesh(args.mesh)
  n = math.prod(max(v, 1) for v in axes.values())
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax

  from r1jax.models.presets import get_preset
  from r1jax.parallel.mesh import make_mesh

  overrides = {}
  if args.layers:
    overrides["n_layers"] = args.layers
  if args.remat:
    overrides["remat"] = args.remat
  if args.scan:
    overrides["scan_layers"] = args.scan == "true"
  if args.moe_backend:
    overrides["moe_backend"] = args.moe_backend
  if args.param_dtype:
    overrides.update(param_dtype=args.param_dtype, dtype=args.param_dtype)
  cfg = get_preset(args.preset, **overrides)
  mesh = make_mesh(axes, devices=jax.devices()[:n])
  head = {"preset": args.preset, "mesh": ",".join(f"{k}={v}" for k, v in mesh.shape.items()),
          "layers": cfg.n_layers, "scan_layers": bool(getattr(cfg, "scan_layers", False)), "remat": cfg.remat,
          "moe_backend": cfg.moe_backend, "param_dtype": cfg.param_dtype, "jax": jax.__version__}

  def emit(row):
    row = {**head, **row}
    if args.hbm_gib:
      row["hbm_gib"] = args.hbm_gib
      row["fits_hbm"] = row["bytes_per_device_peak"] <= args.hbm_gib * 2**30
    print(json.dumps(row), flush=True)

  for case in filter(None, args.cases.split(",")):
    if case == "grpo_update":
      emit(plan_update(cfg, mesh, rows=args.rows, seq=args.seq, micro_batch=args.micro_batch, chunk=args.chunk))
    elif case == "decode":
      emit(plan_decode(cfg, mesh, rows=args.rows, seq=args.decode_seq or args.seq, max_new=args.max_new))
    else:
      raise SystemExit(f"--cases: unknown case {case!r} (grpo_update, decode)")
  if args.depths:
    times = {}
    for layers in (cfg.n_layers, 2 * cfg.n_layers):
      row = plan_update(cfg.replace(n_layers=layers), mesh, rows=args.rows, seq=args.seq,
                        micro_batch=args.micro_batch, chunk=args.chunk)
      times[layers] = row["compile_s"]
    a, b = times.values()
    print(json.dumps({**head, "case": "depth", "layers": list(times), "compile_s": list(times.values()),
                      "compile_ratio_2L_over_L": b / a}), flush=True)


if __name__ == "__main__":
  main()
