"""Data pipeline throughput: SFT packing and RL prompt batches (batches/s), with a naive peer.

    python benchmarks/data.py                      # defaults: cold-start SFT + countdown prompts
    python benchmarks/data.py --seq_len 2048 --sft_batch 16 --seconds 10 --workers 2

Everything is generated offline into a temp dir (JSONL), the tokenizer is a sentencepiece model
trained in-process on the generated pretraining corpus, and each pipeline is timed after a warm-up
for `--seconds`. The peer, measured in the same run, is the plain Python loop a script would write
(read lines, json.loads, tokenize, pad one example per row, no packing, no shuffle, no state). The
JSON printed at the end has batches/s, tokens/s, packing efficiency (real tokens / row tokens) and
the prescan (index build) rate.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from r1jax.data import pipelines, templates  # noqa: E402
from r1jax.data.encode import encode_prompt, encode_sft  # noqa: E402
from r1jax.data.records import DatasetSpec  # noqa: E402
from r1jax.data.sources import open_source, write_jsonl  # noqa: E402
from r1jax.data.tasks import corpora, countdown  # noqa: E402
from r1jax.data.tokenizer import train_sentencepiece  # noqa: E402


def timed(it, seconds: float, warmup: int = 3) -> tuple[int, float, list]:
  for _ in range(warmup):
    next(it)
  n, start, kept = 0, time.perf_counter(), []
  while time.perf_counter() - start < seconds:
    kept.append(next(it))
    n += 1
  return n, time.perf_counter() - start, kept


def naive_sft(path: str, tok, tpl, batch: int, seq_len: int):
  """The peer: one example per row, padded; no packing, shuffle, sharding or checkpointing."""
  while True:
    with open(path, encoding="utf-8") as f:
      rows = []
      for line in f:
        ex = encode_sft(json.loads(line), tok, tpl, seq_len)
        row = np.zeros((seq_len,), np.int32)
        row[:len(ex["tokens"])] = ex["tokens"]
        rows.append(row)
        if len(rows) == batch:
          yield np.stack(rows)
          rows = []


def naive_rl(path: str, tok, tpl, batch: int, max_prompt_len: int):
  while True:
    with open(path, encoding="utf-8") as f:
      out = []
      for line in f:
        out.append(encode_prompt(json.loads(line), tok, tpl, max_prompt_len)["prompt_tokens"])
        if len(out) == batch:
          yield out
          out = []


def with_workers(ds, workers: int):
  if workers <= 0:
    return ds
  import grain
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS(sys.argv[:1])  # grain's worker processes read absl flags
  return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--records", type=int, default=2000, help="SFT and RL records generated")
  p.add_argument("--sft_batch", type=int, default=8)
  p.add_argument("--seq_len", type=int, default=1024)
  p.add_argument("--rl_batch", type=int, default=32)
  p.add_argument("--max_prompt_len", type=int, default=512)
  p.add_argument("--vocab", type=int, default=2048)
  p.add_argument("--read_threads", type=int, default=2)
  p.add_argument("--workers", type=int, default=0, help="grain mp_prefetch worker processes")
  p.add_argument("--seconds", type=float, default=5.0)
  args = p.parse_args()

  tmp = tempfile.mkdtemp(prefix="r1jax_data_bench_")
  t0 = time.perf_counter()
  tok = train_sentencepiece([d["text"] for d in corpora.pretraining_corpus(3000, seed=0)],
                            vocab_size=args.vocab)
  t_tok = time.perf_counter() - t0
  sft_path, rl_path = os.path.join(tmp, "sft.jsonl"), os.path.join(tmp, "rl.jsonl")
  write_jsonl(corpora.cold_start_corpus(args.records, seed=0), sft_path)
  write_jsonl(countdown.generate("train", args.records, seed=0, difficulty=2), rl_path)

  t0 = time.perf_counter()
  sft_src = open_source(DatasetSpec(paths=(sft_path,), kind="sft"))
  t_prescan = time.perf_counter() - t0
  rl_src = open_source(DatasetSpec(paths=(rl_path,), kind="rl"))
  sft_tpl = templates.PromptTemplate("r1", chat_format="plain")
  rl_tpl = templates.PromptTemplate("r1_zero")
  shard = dict(process_index=0, process_count=1, read_threads=args.read_threads)

  results: dict[str, dict] = {}
  sft = with_workers(pipelines.sft_dataset(sft_src, tok, sft_tpl, batch_size=args.sft_batch,
                                           seq_len=args.seq_len, **shard), args.workers)
  n, dt, kept = timed(iter(sft), args.seconds)
  real = sum(int((b["segment_ids"] > 0).sum()) for b in kept)
  segs = sum(int(b["segment_ids"].max(axis=1).sum()) for b in kept)
  results["sft_packed"] = {
      "batches_per_s": n / dt, "tokens_per_s": n * args.sft_batch * args.seq_len / dt,
      "examples_per_s": segs / dt, "packing_efficiency": real / (n * args.sft_batch * args.seq_len),
      "batch": [args.sft_batch, args.seq_len]}
  n, dt, kept = timed(naive_sft(sft_path, tok, sft_tpl, args.sft_batch, args.seq_len), args.seconds)
  real = sum(int((b > 0).sum()) for b in kept)
  results["sft_naive_peer"] = {
      "batches_per_s": n / dt, "examples_per_s": n * args.sft_batch / dt,
      "packing_efficiency": real / (n * args.sft_batch * args.seq_len)}

  rl = with_workers(pipelines.rl_prompt_dataset(rl_src, tok, rl_tpl, batch_size=args.rl_batch,
                                                max_prompt_len=args.max_prompt_len, **shard),
                    args.workers)
  n, dt, kept = timed(iter(rl), args.seconds)
  results["rl_prompts"] = {"batches_per_s": n / dt, "prompts_per_s": n * args.rl_batch / dt,
                           "mean_prompt_len": float(np.mean([np.mean(b["prompt_lengths"])
                                                             for b in kept])),
                           "batch": args.rl_batch}
  n, dt, _ = timed(naive_rl(rl_path, tok, rl_tpl, args.rl_batch, args.max_prompt_len), args.seconds)
  results["rl_naive_peer"] = {"batches_per_s": n / dt, "prompts_per_s": n * args.rl_batch / dt}

  sizes = {"sft_records": len(sft_src), "rl_records": len(rl_src),
           "sft_file_mb": os.path.getsize(sft_path) / 2**20,
           "rl_file_mb": os.path.getsize(rl_path) / 2**20, "vocab_size": tok.vocab_size}
  out = {"benchmark": "data", "cpu_count": os.cpu_count(), "read_threads": args.read_threads,
         "workers": args.workers, "tokenizer_train_s": t_tok,
         "prescan_records_per_s": len(sft_src) / t_prescan, "sizes": sizes, **results}
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
