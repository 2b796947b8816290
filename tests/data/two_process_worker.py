"""One of two JAX processes (CPU, Gloo) for test_multiprocess.py: reads its shard, makes the
global batch, reduces it over the mesh, writes what it saw as JSON."""
import json
import sys

import jax
import numpy as np


def main(process_id: int, port: str, out_path: str) -> None:
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                             process_id=process_id, initialization_timeout=60)
  from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

  from r1jax.data import pipelines
  from r1jax.data.global_batch import to_global
  from r1jax.data.records import DatasetSpec
  from r1jax.data.sources import InMemorySource
  from r1jax.data.templates import PromptTemplate
  from r1jax.data.tokenizer import train_sentencepiece

  tok = train_sentencepiece([f"question {i} response {i}" for i in range(200)], vocab_size=320)
  rows = [{"prompt": f"question {i}", "response": f"response {i}", "id": f"r{i}"}
          for i in range(16)]
  src = InMemorySource(rows, DatasetSpec(paths=("mp",), kind="sft"))
  # process_index / process_count come from jax.distributed here, not from arguments.
  ds = pipelines.sft_dataset(src, tok, PromptTemplate("raw"), batch_size=2, seq_len=16, seed=0,
                             pack=False)
  batch = next(iter(ds))
  mesh = Mesh(np.array(jax.devices()), ("data",), axis_types=(AxisType.Auto,))
  g = to_global(batch, mesh)
  total = jax.jit(lambda x: x.sum(), out_shardings=NamedSharding(mesh, P()))(g["tokens"])
  with open(out_path, "w") as f:
    json.dump({"process_index": jax.process_index(), "local": batch["tokens"].tolist(),
               "global_shape": list(g["tokens"].shape), "global_sum": int(total),
               "devices": len(jax.devices())}, f)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
