"""Train-step speed: r1jax (jit, fused log-prob loss, AdamW) vs. the same architecture in HF
transformers (PyTorch, on the GPU when there is one) in the same process. Prints JSON.

    python benchmarks/train_step.py [--preset tiny_moe] [--batch 8] [--seq 256] [--devices 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--preset", default="tiny_moe")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=256)
  ap.add_argument("--devices", type=int, default=1, help="virtual CPU devices (mesh over fsdp)")
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--no-peer", action="store_true")
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                  help="parameters and activations, both sides")
  ap.add_argument("--attention", default="xla", choices=["xla", "cudnn"], help="ModelConfig.attention_impl")
  ap.add_argument("--remat", default="none", choices=["none", "full", "dots"])
  ap.add_argument("--peer-device", default="auto", help="torch device for the HF peer (auto: cuda if present)")
  args = ap.parse_args()
  if args.devices > 1:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
  import jax
  import numpy as np

  from r1jax.models.accounting import count_params, flops_per_token
  from r1jax.models.presets import get_preset
  from r1jax.models.sharded import create_sharded_model
  from r1jax.parallel import sharding as shd
  from r1jax.parallel.mesh import make_mesh
  from r1jax.train.sft import make_sft_step
  from r1jax.train.state import init_train_state, make_optimizer, split_model

  cfg = get_preset(args.preset, param_dtype=args.dtype, dtype=args.dtype, remat=args.remat,
                   attention_impl=args.attention)
  mesh = make_mesh({"fsdp": -1})
  B, T = args.batch, args.seq
  rng = np.random.default_rng(0)
  tok = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
  batch = dict(tokens=tok, targets=np.roll(tok, -1, 1), loss_mask=np.ones((B, T), np.int32),
               segment_ids=np.ones((B, T), np.int32), positions=np.tile(np.arange(T, dtype=np.int32), (B, 1)))
  out = {"preset": args.preset, "batch": B, "seq": T, "devices": jax.device_count(),
         "params": count_params(cfg)["total"], "device_kind": jax.devices()[0].device_kind,
         "dtype": args.dtype, "remat": args.remat, "attention_impl": args.attention, "jax": jax.__version__}
  with jax.set_mesh(mesh):
    model = create_sharded_model(cfg, mesh)
    g, p, e = split_model(model)
    tx = make_optimizer({"learning_rate": 1e-4, "warmup_steps": 1, "total_steps": 100})
    st = init_train_state(p, e, tx)
    jb = {k: jax.device_put(v, shd.batch_sharding(mesh)) for k, v in batch.items()}
    step = jax.jit(make_sft_step(g, tx, chunk_size=512), donate_argnums=0)
    t = time.perf_counter()
    compiled = step.lower(st, jb).compile()
    out["compile_s"] = time.perf_counter() - t
    st, m = compiled(st, jb)
    jax.block_until_ready(m)
    times = []
    for _ in range(args.steps):
      t = time.perf_counter()
      st, m = compiled(st, jb)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t)
  out["r1jax_step_s"] = statistics.median(times)
  mem = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in mem:
    out["r1jax_peak_mem_gib"] = mem["peak_bytes_in_use"] / 2**30
  out["r1jax_tokens_per_s"] = B * T / out["r1jax_step_s"]
  out["flops_per_token"] = flops_per_token(cfg, T, training=True)
  out["r1jax_gflops_per_s"] = out["flops_per_token"] * B * T / out["r1jax_step_s"] / 1e9
  if not args.no_peer:
    import torch
    import transformers as tf

    from r1jax.convert.hf_config import to_hf_config

    hf = to_hf_config(cfg)
    hcfg = tf.AutoConfig.for_model(hf.pop("model_type"), **{k: v for k, v in hf.items() if k != "architectures"})
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.peer_device == "auto" else args.peer_device
    tdtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    tm = tf.AutoModelForCausalLM.from_config(hcfg).to(device=device, dtype=tdtype)
    if args.remat != "none":
      tm.gradient_checkpointing_enable()
    opt = torch.optim.AdamW(tm.parameters(), lr=1e-4)
    x = torch.as_tensor(tok, dtype=torch.long, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def tstep():
      loss = tm(input_ids=x, labels=x).loss
      loss.backward()
      opt.step()
      opt.zero_grad()

    tstep()
    sync()
    times = []
    for _ in range(args.steps):
      t = time.perf_counter()
      tstep()
      sync()
      times.append(time.perf_counter() - t)
    out["hf_device"] = device
    if device.startswith("cuda"):
      out["hf_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    out["hf_torch_step_s"] = statistics.median(times)
    out["speedup_vs_hf"] = out["hf_torch_step_s"] / out["r1jax_step_s"]
    out["torch_threads"] = torch.get_num_threads()
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
