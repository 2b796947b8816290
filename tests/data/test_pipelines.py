"""Pipelines: SFT packing invariants, RL prompts, eval k-expansion, per-process sharding,
exact resume (get_state/set_state and orbax), global arrays on an 8-device mesh."""
import collections
import itertools

import grain
import numpy as np
import pytest

from r1jax.data import pipelines
from r1jax.data.global_batch import to_global
from r1jax.data.records import DataError, DatasetSpec
from r1jax.data.sources import InMemorySource
from r1jax.data.templates import PromptTemplate

RAW = PromptTemplate("raw")


def sft_rows(n=40):
  rows = []
  for i in range(n):
    extra = " and more" * (i % 7)  # varied lengths so packing has something to do
    rows.append({"prompt": f"What is {i} + {2 * i}?", "answer": str(3 * i),
                 "response": f"<think> {i} plus {2 * i}{extra} </think> <answer> {3 * i} </answer>",
                 "id": f"r{i}"})
  return rows


def sft_source(n=40):
  return InMemorySource(sft_rows(n), DatasetSpec(paths=("sft",), kind="sft"), name="sft")


def expected_sft(tok, row):
  """Independent reference: BOS + prompt ids + response ids + EOS; loss on response + EOS."""
  p, r = tok.encode(row["prompt"]), tok.encode(row["response"])
  tokens = [tok.bos_id] + p + r + [tok.eos_id]
  return tokens, len(r) + 1


def split_row(row, pad_id):
  """Checks the packed-row invariants; returns the segments as (tokens, loss_mask) pairs."""
  seg, pos, tok = row["segment_ids"], row["positions"], row["tokens"]
  tgt, mask = row["targets"], row["loss_mask"]
  n_real = int((seg > 0).sum())
  assert (seg[:n_real] > 0).all() and (seg[n_real:] == 0).all(), "padding only at the end"
  assert (tok[n_real:] == pad_id).all() and (tgt[n_real:] == 0).all() and (mask[n_real:] == 0).all()
  out = []
  ids = seg[:n_real]
  assert ids[0] == 1 and (np.diff(ids) >= 0).all() and (np.diff(ids) <= 1).all()
  for s in range(1, int(ids.max()) + 1):
    where = np.nonzero(seg == s)[0]
    assert (np.diff(where) == 1).all()
    assert (pos[where] == np.arange(len(where))).all(), "positions restart at 0 per segment"
    t, g, m = tok[where], tgt[where], mask[where]
    assert (g[:-1] == t[1:]).all(), "targets are the next token within the segment"
    assert g[-1] == 0, "no target across a segment boundary"
    assert (m[g == 0] == 0).all()
    out.append((t.tolist(), int(m.sum())))
  return out


@pytest.mark.parametrize("pack", [True, False])
def test_sft_rows_cover_the_data_with_correct_masks(sp_tokenizer, pack):
  tok, rows = sp_tokenizer, sft_rows()
  expected = collections.Counter()
  for row in rows:
    tokens, n_loss = expected_sft(tok, row)
    expected[(tuple(tokens), n_loss)] += 1
  seq_len = max(len(k[0]) for k in expected) + 8
  got = collections.Counter()
  segments_per_row = []
  for pi in range(2):  # two simulated processes, one epoch, batch 1 so nothing is left over
    ds = pipelines.sft_dataset(sft_source(), tok, RAW, batch_size=1, seq_len=seq_len, seed=3,
                               num_epochs=1, pack=pack, num_packing_bins=4, process_index=pi,
                               process_count=2)
    for batch in ds:
      assert {k: v.dtype for k, v in batch.items()} == {
          "tokens": np.int32, "targets": np.int32, "loss_mask": np.int32,
          "segment_ids": np.int32, "positions": np.int32, "num_truncated": np.int32,
          "dropped_total": np.int32}
      assert batch["tokens"].shape == (1, seq_len)
      segs = split_row({k: v[0] for k, v in batch.items()}, tok.pad_id)
      segments_per_row.append(len(segs))
      for t, n_loss in segs:
        got[(tuple(t), n_loss)] += 1
  assert got == expected
  if pack:
    assert max(segments_per_row) > 1 and len(segments_per_row) < len(rows)
  else:
    assert set(segments_per_row) == {1}


def test_sft_loss_mask_marks_the_response_only(sp_tokenizer):
  tok = sp_tokenizer
  row = sft_rows(1)[0]
  ds = pipelines.sft_dataset(sft_source(1), tok, RAW, batch_size=1, seq_len=64, num_epochs=1,
                             process_index=0, process_count=1)
  b = next(iter(ds))
  targets, mask = b["targets"][0], b["loss_mask"][0].astype(bool)
  assert tok.decode(targets[mask]) == row["response"] + "</s>"  # response targets + EOS
  n_prompt = 1 + len(tok.encode(row["prompt"]))
  assert not mask[:n_prompt - 1].any() and mask[n_prompt - 1]


def test_sft_truncation_keeps_the_true_next_token(sp_tokenizer):
  tok = sp_tokenizer
  row = sft_rows(1)[0]
  full, _ = expected_sft(tok, row)
  seq_len = len(full) - 3
  ds = pipelines.sft_dataset(sft_source(1), tok, RAW, batch_size=1, seq_len=seq_len, num_epochs=1,
                             process_index=0, process_count=1)
  b = next(iter(ds))
  assert b["tokens"][0].tolist() == full[:seq_len]
  assert b["targets"][0].tolist() == full[1:seq_len + 1]
  assert b["num_truncated"][0] == 1


def test_sft_from_chat_messages(sp_tokenizer):
  tok = sp_tokenizer
  msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
          {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"}]
  src = InMemorySource([{"messages": msgs}], DatasetSpec(paths=("c",), kind="sft"))
  tpl = PromptTemplate("chat", chat_format="plain")
  b = next(iter(pipelines.sft_dataset(src, tok, tpl, batch_size=1, seq_len=64, num_epochs=1,
                                      process_index=0, process_count=1)))
  mask = b["loss_mask"][0].astype(bool)
  assert tok.decode(b["targets"][0][mask]) == "hello</s>ciao</s>"


def rl_rows(n=30, long_every=4):
  rows = []
  for i in range(n):
    words = " very" * 60 if i % long_every == 0 else ""
    rows.append({"prompt": f"Compute {i} times{words} 3.", "answer": str(3 * i), "task": "math",
                 "language": "en", "id": f"q{i}"})
  return rows


def rl_source(n=30):
  return InMemorySource(rl_rows(n), DatasetSpec(paths=("rl",), kind="rl"), name="rl")


def test_rl_prompts_drop_and_count_overlong_across_two_processes(sp_tokenizer):
  tok, rows = sp_tokenizer, rl_rows()
  lengths = {r["id"]: 1 + len(tok.encode(r["prompt"])) for r in rows}
  limit = 40
  overlong = {k for k, n in lengths.items() if n > limit}
  assert 0 < len(overlong) < len(rows)
  seen, dropped = [], 0
  for pi in range(2):
    ds = pipelines.rl_prompt_dataset(rl_source(), tok, RAW, batch_size=1, max_prompt_len=limit,
                                     seed=1, num_epochs=1, process_index=pi, process_count=2)
    last = 0
    for b in ds:
      assert b["prompt_lengths"].dtype == np.int32
      for toks, ans, meta in zip(b["prompt_tokens"], b["answers"], b["metadata"]):
        row = rows[int(meta["id"][1:])]
        assert toks == [tok.bos_id] + tok.encode(row["prompt"])
        assert ans == row["answer"] and meta["task"] == "math" and meta["prompt"] == row["prompt"]
        seen.append(meta["id"])
      assert b["dropped_total"] >= last
      last = b["dropped_total"]
    dropped += last
  # every short prompt exactly once over the two shards; every long one counted (a long
  # prompt after a shard's last kept one is counted in the iterator state, not a batch)
  assert sorted(seen) == sorted(set(lengths) - overlong)
  assert dropped <= len(overlong)


def test_rl_batches_are_unique_prompts_and_states_count_drops(sp_tokenizer):
  tok = sp_tokenizer
  ds = pipelines.rl_prompt_dataset(rl_source(), tok, RAW, batch_size=4, max_prompt_len=40,
                                   seed=0, num_epochs=1, process_index=0, process_count=1)
  it = iter(ds)
  ids = []
  for b in it:
    assert len(b["prompt_tokens"]) == 4 and len(set(m["id"] for m in b["metadata"])) == 4
    ids += [m["id"] for m in b["metadata"]]
  assert len(ids) == len(set(ids))
  assert it.get_state()["dropped"] == {"overlong_prompt": 8}  # ids 0, 4, …, 28


def test_everything_dropped_is_a_clear_error(sp_tokenizer, monkeypatch):
  from r1jax.data import transforms

  monkeypatch.setattr(transforms, "MAX_CONSECUTIVE_DROPS", 500)
  ds = pipelines.rl_prompt_dataset(rl_source(), sp_tokenizer, RAW, batch_size=2, max_prompt_len=2,
                                   process_index=0, process_count=1)
  with pytest.raises(DataError, match="in a row were dropped"):
    next(iter(ds))


def test_record_shards_are_disjoint_and_cover():
  src = list(range(101))
  for count in (2, 3):
    shards = [list(pipelines.record_dataset(src, seed=5, num_epochs=1, process_index=i,
                                            process_count=count)) for i in range(count)]
    flat = list(itertools.chain(*shards))
    assert sorted(flat) == src and len(set(flat)) == len(flat)
    assert all(len(s) >= len(src) // count for s in shards)
  with pytest.raises(ValueError, match="process_index 2"):
    pipelines.process_shard(2, 2)
  assert pipelines.local_batch_size(32, 2) == 16
  with pytest.raises(ValueError, match="not divisible"):
    pipelines.local_batch_size(30, 4)


@pytest.mark.parametrize("max_table", [1 << 22, 10])  # NumPy table / Grain's shuffle above it
def test_each_epoch_is_a_new_permutation(max_table):
  from r1jax.data.transforms import EpochShuffleMapDataset

  ds = EpochShuffleMapDataset(grain.MapDataset.source(list(range(50))), seed=0,
                              max_table=max_table).repeat(3)
  epochs = [[ds[j] for j in range(i * 50, (i + 1) * 50)] for i in range(3)]
  assert all(sorted(e) == list(range(50)) for e in epochs)
  assert epochs[0] != epochs[1] != epochs[2]
  rd = pipelines.record_dataset(list(range(50)), seed=0, num_epochs=2, process_index=0,
                                process_count=1)
  assert sorted(rd) == sorted(list(range(50)) * 2)


def _assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    if isinstance(a[k], np.ndarray):
      np.testing.assert_array_equal(a[k], b[k])
    else:
      assert a[k] == b[k], k


def _pipelines(tok):
  return {
      "sft_packed": lambda: pipelines.sft_dataset(sft_source(), tok, RAW, batch_size=2, seq_len=96,
                                                  seed=2, num_packing_bins=3, process_index=1,
                                                  process_count=2),
      "rl": lambda: pipelines.rl_prompt_dataset(rl_source(), tok, RAW, batch_size=3,
                                                max_prompt_len=40, seed=2, process_index=0,
                                                process_count=2),
  }


@pytest.mark.parametrize("name", ["sft_packed", "rl"])
def test_exact_resume_with_get_set_state(sp_tokenizer, name):
  make = _pipelines(sp_tokenizer)[name]
  k, total = 5, 14  # crosses epoch boundaries (20 records per shard)
  it = iter(make())
  reference = [next(it) for _ in range(total)]
  it = iter(make())
  for _ in range(k):
    next(it)
  state = it.get_state()
  resumed = iter(make())
  resumed.set_state(state)
  for i in range(k, total):
    _assert_batches_equal(next(resumed), reference[i])


def test_exact_resume_through_orbax_checkpoint_manager(sp_tokenizer, tmp_path):
  import orbax.checkpoint as ocp

  make = _pipelines(sp_tokenizer)["sft_packed"]
  it = iter(make())
  reference = [next(it) for _ in range(9)]
  it = iter(make())
  for _ in range(4):
    next(it)
  params = {"w": np.arange(6, dtype=np.float32)}
  options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
  with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as mngr:
    mngr.save(4, args=ocp.args.Composite(state=ocp.args.StandardSave(params),
                                         data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
  for _ in range(3):
    next(it)  # the live iterator moves on; the checkpoint must not
  fresh = iter(make())
  with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as mngr:
    restored = mngr.restore(mngr.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), data=grain.checkpoint.CheckpointRestore(fresh)))
  np.testing.assert_array_equal(restored["state"]["w"], params["w"])
  for i in range(4, 9):
    _assert_batches_equal(next(fresh), reference[i])


def test_eval_expands_k_samples_per_question(sp_tokenizer):
  tok, k = sp_tokenizer, 3
  rows = rl_rows(11, long_every=1000)[1:]  # 10 short questions
  src = InMemorySource(rows, DatasetSpec(paths=("ev",), kind="eval"))
  counts = collections.defaultdict(list)
  batch_sizes = []
  for pi in range(2):
    for b in pipelines.eval_dataset(src, tok, RAW, k=k, batch_size=4, max_prompt_len=64,
                                    process_index=pi, process_count=2):
      batch_sizes.append(len(b["prompt_tokens"]))
      for toks, meta, ans in zip(b["prompt_tokens"], b["metadata"], b["answers"]):
        row = rows[meta["question_index"]]
        assert toks == [tok.bos_id] + tok.encode(row["prompt"]) and ans == row["answer"]
        counts[meta["question_index"]].append(meta["sample_index"])
  assert sorted(counts) == list(range(10))
  assert all(sorted(v) == list(range(k)) for v in counts.values())
  assert sum(batch_sizes) == 10 * k and min(batch_sizes) < 4  # the short last batch is kept


def test_preference_and_pointwise_batches(sp_tokenizer):
  tok = sp_tokenizer
  pairs = [{"prompt": f"p{i}", "chosen": f"good answer {i}", "rejected": "bad"} for i in range(6)]
  src = InMemorySource(pairs, DatasetSpec(paths=("pref",), kind="preference"))
  b = next(iter(pipelines.preference_dataset(src, tok, RAW, batch_size=6, max_len=32, num_epochs=1,
                                             shuffle=False, process_index=0, process_count=1)))
  assert b["chosen_tokens"].shape == (6, 32) and b["rejected_tokens"].dtype == np.int32
  for i, row in enumerate(pairs):
    for side in ("chosen", "rejected"):
      want = [tok.bos_id] + tok.encode(row["prompt"]) + tok.encode(row[side]) + [tok.eos_id]
      n = b[f"{side}_lengths"][i]
      assert b[f"{side}_tokens"][i, :n].tolist() == want
      assert (b[f"{side}_tokens"][i, n:] == tok.pad_id).all()
  labelled = [{"prompt": f"p{i}", "response": "r", "label": i % 2} for i in range(4)]
  src = InMemorySource(labelled, DatasetSpec(paths=("pw",), kind="pointwise"))
  b = next(iter(pipelines.pointwise_dataset(src, tok, RAW, batch_size=4, max_len=16, num_epochs=1,
                                            shuffle=False, process_index=0, process_count=1)))
  assert b["labels"].tolist() == [0, 1, 0, 1] and b["tokens"].shape == (4, 16)


def test_to_global_on_8_device_mesh(devices8, sp_tokenizer):
  import jax
  from jax.sharding import AxisType, Mesh, PartitionSpec as P

  mesh = Mesh(np.array(devices8).reshape(2, 2, 2, 1), ("data", "fsdp", "expert", "tensor"),
              axis_types=(AxisType.Auto,) * 4)
  ds = pipelines.sft_dataset(sft_source(), sp_tokenizer, RAW, batch_size=8, seq_len=64,
                             process_index=0, process_count=1)
  batch = next(iter(ds))
  batch["names"] = ["not", "numeric"]
  g = to_global(batch, mesh)
  assert g["names"] == ["not", "numeric"]
  for key in ("tokens", "targets", "loss_mask", "segment_ids", "positions"):
    assert isinstance(g[key], jax.Array) and g[key].shape == (8, 64)
    assert g[key].sharding.spec == P(("data", "fsdp", "expert"), None)
    assert len(g[key].addressable_shards) == 8
    np.testing.assert_array_equal(np.asarray(g[key]), batch[key])
  data_mesh = Mesh(np.array(devices8), ("data",), axis_types=(AxisType.Auto,))
  assert to_global(batch, data_mesh)["tokens"].sharding.spec == P(("data",), None)
  with pytest.raises(ValueError, match=r"not divisible by the 8 shards .*data=2, fsdp=2, expert=2"):
    to_global({"tokens": np.zeros((6, 4), np.int32)}, mesh)


@pytest.mark.parametrize("kind", ["rl", "sft"])
def test_a_lone_surrogate_is_skipped_up_front_not_mid_epoch(sp_tokenizer, tmp_path, kind):
  """JSON "\\ud800" decodes to a str no tokenizer can encode: the prescan skips that row with
  file:line and the field, and a whole epoch then runs (it used to crash part-way through)."""
  import json

  from r1jax.data.sources import JsonlSource

  rows = rl_rows(12, long_every=100) if kind == "rl" else sft_rows(12)
  lines = [json.dumps(r) for r in rows]
  field = "prompt" if kind == "rl" else "response"
  lines[7] = lines[7].replace(f'"{field}": "', f'"{field}": "x\\ud800', 1)
  path = tmp_path / "data.jsonl"
  path.write_text("\n".join(lines) + "\n")
  src = JsonlSource(str(path), DatasetSpec(paths=(str(path),), kind=kind, max_skip_fraction=0.1))
  assert len(src) == 11
  assert src.stats.first_bad == [(f"{path}:8", f"field '{field}': not valid text, a lone surrogate "
                                  "U+D800 at character 1 (cannot be encoded as UTF-8)")]
  if kind == "rl":
    ds = pipelines.rl_prompt_dataset(src, sp_tokenizer, RAW, batch_size=1, max_prompt_len=1000,
                                     seed=0, num_epochs=1, process_index=0, process_count=1)
    ids = [m["id"] for b in ds for m in b["metadata"]]
  else:
    ds = pipelines.sft_dataset(src, sp_tokenizer, RAW, seq_len=64, pack=False, batch_size=1,
                               seed=0, num_epochs=1, process_index=0, process_count=1)
    ids = [b for b in ds]
  assert len(ids) == 11
