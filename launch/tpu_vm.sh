#!/usr/bin/env bash
# Run one r1jax stage on every host of a TPU VM slice (multi-controller JAX: one process per host;
# jax.distributed discovers the slice by itself on TPU VMs).
#
#   launch/tpu_vm.sh TPU_NAME ZONE experiments/r1_zero.py:qwen2.5-math-1.5b gs://bucket/runs/r1zero [--config.x=y ...]
set -euo pipefail
TPU=$1; ZONE=$2; CONFIG=$3; WORKDIR=$4; shift 4
REPO=${R1JAX_REPO:-~/r1jax}
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "
  set -e
  cd $REPO
  [ -d venv ] || (python3 -m venv venv && venv/bin/pip install -q -e '.[tpu]')
  venv/bin/python -m r1jax --config=$CONFIG --workdir=$WORKDIR --config.distributed.num_processes=0 $*
"
