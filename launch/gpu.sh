#!/usr/bin/env bash
# Run one r1jax stage on GPU hosts. Single host: all local GPUs form the mesh. Multi-host: run this
# on every host with the same COORDINATOR (host:port), NUM_HOSTS and a distinct HOST_ID.
#
#   launch/gpu.sh experiments/r1_zero.py:qwen2.5-math-1.5b /runs/r1zero [--config.x=y ...]
set -euo pipefail
CONFIG=$1; WORKDIR=$2; shift 2
cd "$(dirname "$0")/.."
[ -d venv ] || (python3 -m venv venv && venv/bin/pip install -q -e ".[cuda]")
DIST=()
if [ "${NUM_HOSTS:-1}" -gt 1 ]; then
  DIST=(--config.distributed.num_processes="$NUM_HOSTS" --config.distributed.process_id="$HOST_ID"
        --config.distributed.coordinator_address="$COORDINATOR")
fi
XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9} \
  venv/bin/python -m r1jax --config="$CONFIG" --workdir="$WORKDIR" "${DIST[@]}" "$@"
