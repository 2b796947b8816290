"""Sampler throughput against `transformers` generate on the same weights, in one process. Prints JSON.

Cases:
  qwen2_tiny  4 layers, d_model 256, 4 query heads x 64 with 2 KV heads, q/k/v bias, SwiGLU 1024,
              vocab 8192, untied head, fp32, random init (built by transformers, loaded through
              the converter); batch 16, prompt 32, 64 new tokens, every row forced to full length.
  tiny_moe    the `tiny_moe` preset (MLA + DeepSeek-V3 MoE), random init, exported to HF format and
              loaded by transformers (DeepseekV3ForCausalLM); same batch / lengths.
  qwen2_05b   Qwen2.5-0.5B shapes (24 layers, d_model 896, 14 x 64 q / 2 KV heads, vocab 151936, tied),
              bf16, random init; batch 64, prompt 128, 256 new tokens (an accelerator case: on a 2-core
              CPU it takes many minutes). HF runs on the GPU when there is one.
  long_tail   qwen2_tiny weights; 128 prompts through 16 slots, 10% of rows 8x longer than the rest
              (16 vs 128 new tokens via per-row limits, greedy): static batching vs slot refill.

For each case: tokens/s after warm-up (median of --repeats), first-call and compile time, the
decode step time against a bare forward-only decode loop (the cost of sampling, log-probs and
bookkeeping on top of the matmuls), host syncs per call, HF tokens/s with 1 and with all torch
threads and the speed ratios, and how many greedy tokens agree with HF's.

  python benchmarks/sampler.py                 # full run (CPU: a few minutes, mostly HF)
  python benchmarks/sampler.py --quick         # fewer repeats, smaller long-tail case
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from r1jax.convert.hf import load_hf_model, save_hf_model  # noqa: E402
from r1jax.models.config import ModelConfig  # noqa: E402
from r1jax.models.presets import get_preset  # noqa: E402
from r1jax.models.transformer import Transformer, init_cache  # noqa: E402
from r1jax.sampling import Sampler, SamplingParams, cache_report  # noqa: E402

BATCH, PROMPT, NEW = 16, 32, 64


def qwen2_hf_model(directory: str):
  import torch
  import transformers as tf

  torch.manual_seed(0)
  cfg = tf.Qwen2Config(vocab_size=8192, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       tie_word_embeddings=False)
  model = tf.Qwen2ForCausalLM(cfg).eval()
  model.save_pretrained(directory)
  return model.to("cuda") if torch.cuda.is_available() else model


def random_r1jax_model(cfg: ModelConfig, seed: int = 0, std: float = 0.02) -> Transformer:
  """NumPy-initialised weights (jax.random init of many small tensors compiles slowly on CPU)."""
  rng = np.random.default_rng(seed)
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))

  def draw(path, x):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    v = 1.0 + 0.1 * rng.standard_normal(x.shape) if "norm" in name else std * rng.standard_normal(x.shape)
    return jnp.asarray(v.astype(x.dtype))

  return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(draw, abstract))


def moe_hf_model(directory: str):
  import torch
  import transformers as tf

  model = random_r1jax_model(get_preset("tiny_moe"))
  save_hf_model(model, directory)
  hf = tf.AutoModelForCausalLM.from_pretrained(directory).eval()
  return hf.to("cuda") if torch.cuda.is_available() else hf


def qwen2_05b_hf_model(directory: str):
  import torch
  import transformers as tf

  torch.manual_seed(0)
  cfg = tf.Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                       tie_word_embeddings=True, torch_dtype="bfloat16")
  model = tf.Qwen2ForCausalLM(cfg).to(torch.bfloat16).eval()
  model.save_pretrained(directory)
  return model.to("cuda") if torch.cuda.is_available() else model


def hf_generate_tps(hf_model, prompts: np.ndarray, new: int, repeats: int, threads: int) -> tuple[float, np.ndarray]:
  """HF greedy generate tokens/s (median of `repeats` after a warm-up) with `threads` torch threads."""
  import torch

  torch.set_num_threads(threads)
  ids = torch.as_tensor(prompts, dtype=torch.long, device=hf_model.device)
  sync = torch.cuda.synchronize if hf_model.device.type == "cuda" else (lambda: None)
  kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new, min_new_tokens=new,
            pad_token_id=0, eos_token_id=None)
  with torch.no_grad():
    out = hf_model.generate(ids, **kw)  # warm-up
    sync()
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      hf_model.generate(ids, **kw)
      sync()
      times.append(time.perf_counter() - t0)
  return prompts.shape[0] * new / statistics.median(times), out[:, prompts.shape[1]:].cpu().numpy()


def forward_only_step_s(model: Transformer, batch: int, prompt: int, new: int) -> float:
  """Seconds per step of a bare decode loop: model forward + argmax feedback in one fori_loop."""
  graphdef, params = nnx.split(model)
  cfg = model.cfg

  @jax.jit
  def loop(params, cache):
    m = nnx.merge(graphdef, params)

    def body(t, carry):
      cache, tok = carry
      pos = jnp.full((batch, 1), prompt + t, jnp.int32)
      out = m(tok, pos, jnp.ones_like(tok), cache=cache, write_index=jnp.full((batch,), prompt + t, jnp.int32))
      return out.cache, jnp.argmax(out.logits, -1).astype(jnp.int32)

    return jax.lax.fori_loop(0, new - 1, body, (cache, jnp.zeros((batch, 1), jnp.int32)))[1]

  cache = init_cache(cfg, batch, prompt + new)
  jax.block_until_ready(loop(params, cache))
  times = []
  for _ in range(3):
    t0 = time.perf_counter()
    jax.block_until_ready(loop(params, cache))
    times.append(time.perf_counter() - t0)
  return statistics.median(times) / (new - 1)


def matmul_flops_per_token(cfg: ModelConfig, params) -> float:
  """2 x (weights touched per token): all dense weights, the routed experts actually used."""
  total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    if leaf.ndim < 2 or "embed_tokens" in name:
      continue
    n = leaf.size
    if any(w in name for w in ("w_gate", "w_up", "w_down")):
      n = n * cfg.n_experts_per_tok // cfg.n_routed_experts
    total += n
  return 2.0 * total


def bench_sampler(sampler: Sampler, params, prompts, sp: SamplingParams, repeats: int, **kw) -> dict:
  t0 = time.perf_counter()
  first = sampler.generate(params, prompts, sp, **kw)
  first_s = time.perf_counter() - t0
  runs = [sampler.generate(params, prompts, sp, **kw) for _ in range(repeats)]
  med = statistics.median(r.stats["seconds"] for r in runs)
  tokens = int(first.lengths.sum())
  return {"result": first, "first_call_s": first_s, "median_s": med, "tokens": tokens,
          "tokens_per_s": tokens / med, "compile_s": first_s - med, "compiles": first.stats["compiles"],
          "later_compiles": sum(sum(r.stats["compiles"].values()) for r in runs),
          "decode_steps": first.stats["decode_steps"], "host_syncs": first.stats["decode_calls"],
          "slot_utilization": first.stats["slot_utilization"]}


def dense_case(name: str, cfg: ModelConfig, model: Transformer, hf_model, repeats: int, hf_repeats: int,
               batch: int = BATCH, prompt_len: int = PROMPT, new: int = NEW) -> dict:
  rng = np.random.default_rng(0)
  prompts = rng.integers(0, cfg.vocab_size, (batch, prompt_len))
  sampler, params = Sampler.from_model(model)
  sp = SamplingParams(temperature=0.0, max_new_tokens=new)  # no stop ids: every row runs to new
  b = bench_sampler(sampler, params, prompts.tolist(), sp, repeats)
  res = b.pop("result")
  assert (res.lengths == new).all()
  sampled = bench_sampler(sampler, params, prompts.tolist(),
                          SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=new), repeats)
  sampled.pop("result")
  step_s = b["median_s"] / new
  fwd_s = forward_only_step_s(model, batch, prompt_len, new)
  flops = matmul_flops_per_token(cfg, params) * batch
  out = {
      "case": name, "batch": batch, "prompt_len": prompt_len, "new_tokens": new,
      "params": int(sum(x.size for x in jax.tree.leaves(params))),
      "greedy": {k: v for k, v in b.items()},
      "sampled_top_p": {"tokens_per_s": sampled["tokens_per_s"], "later_compiles": sampled["later_compiles"]},
      "generate_ms_per_token_step": 1e3 * step_s,
      "forward_only_ms_per_step": 1e3 * fwd_s,
      "overhead_vs_forward_only": step_s / fwd_s,
      "matmul_gflops_per_s": flops / step_s / 1e9,
      "cache": cache_report(cfg),
  }
  if hf_model is not None:
    # torch's thread count decides HF's speed here: with 2 OpenMP threads on a shared 2-core
    # machine, every op's barrier waits on a descheduled thread and generate slows down up to ~30x.
    out["hf"] = {}
    on_gpu = hf_model.device.type == "cuda"
    for threads in [os.cpu_count() or 1] if on_gpu else sorted({1, os.cpu_count() or 1}):
      hf_tps, hf_tokens = hf_generate_tps(hf_model, prompts, new, hf_repeats, threads)
      agree = hf_tokens == res.tokens
      first_diff = [int(np.argmin(r)) if not r.all() else new for r in agree]
      out["hf"]["cuda" if on_gpu else f"torch_threads_{threads}"] = {
          "tokens_per_s": hf_tps, "speedup_vs_hf": b["tokens_per_s"] / hf_tps, "repeats": hf_repeats,
          "greedy_rows_identical": int(agree.all(1).sum()),
          "greedy_tokens_agree_until_first_diff": float(np.mean(first_diff) / new)}
  return out


def long_tail_case(cfg: ModelConfig, model: Transformer, n_prompts: int, short: int, repeats: int) -> dict:
  rng = np.random.default_rng(1)
  prompts = [rng.integers(0, cfg.vocab_size, int(n)).tolist() for n in rng.integers(8, PROMPT + 1, n_prompts)]
  long_rows = rng.choice(n_prompts, size=max(1, round(0.1 * n_prompts)), replace=False)
  limits = [short] * n_prompts
  for r in long_rows:
    limits[r] = 8 * short
  sampler, params = Sampler.from_model(model)
  sp = SamplingParams(temperature=0.0, max_new_tokens=8 * short)
  kw = dict(num_slots=BATCH, max_new_tokens_per_prompt=limits)
  repeats = min(repeats, 3)  # static batching runs ~17 s a call on CPU
  static = bench_sampler(sampler, params, prompts, sp, repeats, refill=False, **kw)
  refill = bench_sampler(sampler, params, prompts, sp, repeats, refill=True, **kw)
  same = bool(np.array_equal(static.pop("result").tokens, refill.pop("result").tokens))
  return {"case": "long_tail", "prompts": n_prompts, "slots": BATCH, "short_new_tokens": short,
          "long_new_tokens": 8 * short, "long_rows": int(len(long_rows)),
          "static_batching": static, "slot_refill": refill,
          "refill_speedup": static["median_s"] / refill["median_s"],
          "outputs_identical": same}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--hf_repeats", type=int, default=3)
  ap.add_argument("--quick", action="store_true", help="2 repeats, 1 HF repeat, 32-prompt long tail")
  ap.add_argument("--out", default="", help="also write the JSON report to this file")
  ap.add_argument("--skip_hf", action="store_true")
  ap.add_argument("--cases", default="qwen2_tiny,tiny_moe,long_tail")
  args = ap.parse_args(argv)
  if args.quick:
    args.repeats, args.hf_repeats = 2, 1
  cases = args.cases.split(",")
  report = {"device": str(jax.devices()[0].device_kind), "n_devices": jax.device_count(),
            "platform": platform.platform(), "jax": jax.__version__, "results": []}
  try:
    import torch

    report["torch"] = torch.__version__
  except ImportError:
    args.skip_hf = True
  with tempfile.TemporaryDirectory() as tmp:
    qwen_dir, moe_dir = os.path.join(tmp, "qwen2"), os.path.join(tmp, "moe")
    if "qwen2_tiny" in cases or "long_tail" in cases:
      hf_qwen = qwen2_hf_model(qwen_dir)
      qcfg, qmodel = load_hf_model(qwen_dir)
    if "qwen2_tiny" in cases:
      report["results"].append(dense_case("qwen2_tiny", qcfg, qmodel, None if args.skip_hf else hf_qwen,
                                          args.repeats, args.hf_repeats))
      print(json.dumps(report["results"][-1], default=str), file=sys.stderr)
    if "tiny_moe" in cases:
      hf_moe = moe_hf_model(moe_dir)
      mcfg, mmodel = load_hf_model(moe_dir)
      report["results"].append(dense_case("tiny_moe", mcfg, mmodel, None if args.skip_hf else hf_moe,
                                          args.repeats, args.hf_repeats))
      print(json.dumps(report["results"][-1], default=str), file=sys.stderr)
    if "qwen2_05b" in cases:
      q5_dir = os.path.join(tmp, "qwen2_05b")
      hf_q5 = qwen2_05b_hf_model(q5_dir)
      q5cfg, q5model = load_hf_model(q5_dir, dtype="bfloat16")
      report["results"].append(dense_case("qwen2_05b", q5cfg, q5model, None if args.skip_hf else hf_q5,
                                          args.repeats, args.hf_repeats, batch=64, prompt_len=128, new=256))
      print(json.dumps(report["results"][-1], default=str), file=sys.stderr)
      del hf_q5, q5model
    if "long_tail" in cases:
      n = 32 if args.quick else 128
      report["results"].append(long_tail_case(qcfg, qmodel, n, 16, args.repeats))
  text = json.dumps(report, indent=1, default=str)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
