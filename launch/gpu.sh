#!/usr/bin/env bash
# Run one r1jax stage on this GPU machine: one process, all local GPUs (or --gpus) in one mesh,
# no jax.distributed. See usage() below; for several machines use launch/gpu_slurm.sh.
set -euo pipefail

PROG=launch/gpu.sh
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=launch/lib.sh
source "$REPO_ROOT/launch/lib.sh"

usage() {
  cat <<'EOF'
Usage: launch/gpu.sh --workdir DIR [options] -- R1JAX_ARGS...

Runs `PYTHON -m r1jax R1JAX_ARGS --workdir=DIR` from the repository root: one process that sees
every local GPU (one mesh over all of them; the config's distributed.num_processes stays 1, so
jax.distributed is not started).

Required:
  --workdir DIR          the stage's workdir, passed verbatim (running again resumes from it)
Options:
  --gpus LIST            CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (default: all)
  --python PY            Python with r1jax[cuda] (default venv/bin/python, relative to the repository)
  --install              first create venv/ (default --python only) and pip install -e ".[cuda]"
  --mem-fraction F       XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.9; JAX's own default is 0.75)
  --xla-flags FLAGS      XLA_FLAGS (default: none; see below)
  --env KEY=VALUE        extra environment (repeatable), e.g. --env XLA_PYTHON_CLIENT_PREALLOCATE=false
  --dry-run              print the commands (one per line, shell-quoted), run nothing
  -h, --help             this text

XLA flags commonly used on GPUs (each accepted by the jaxlib setup.py pins; XLA aborts at start
on an unknown or removed flag: "Unknown flag in XLA_FLAGS"):
  --xla_gpu_enable_latency_hiding_scheduler=true   overlap collectives with compute (multi-GPU)
  --xla_gpu_all_reduce_combine_threshold_bytes=134217728   fewer, larger all-reduces
  --xla_gpu_enable_pipelined_all_gather=true       pipeline FSDP all-gathers across layers
  --xla_gpu_enable_triton_gemm=false               cuBLAS instead of Triton for matmuls
  --xla_gpu_enable_command_buffer=                 no CUDA graphs (debugging, memory)
  --xla_gpu_autotune_level=0                       no autotuning: faster compiles, slower kernels
Environment: XLA_PYTHON_CLIENT_PREALLOCATE=false allocates on demand instead of preallocating
the memory fraction; NCCL_DEBUG=WARN shows NCCL problems.

Several machines without SLURM: run it on each, adding after -- (same N and HOST:PORT everywhere,
I = 0..N-1): --config.distributed.num_processes=N --config.distributed.process_id=I
--config.distributed.coordinator_address=HOST:PORT (HOST: machine 0).

Example:
  launch/gpu.sh --gpus 0,1,2,3 --workdir runs/q15 --xla-flags=--xla_gpu_enable_latency_hiding_scheduler=true -- \
      --config=experiments/r1_zero.py:qwen2.5-math-1.5b --config.model.init_from=/ckpt/Qwen2.5-Math-1.5B
EOF
}

WORKDIR="" GPUS="" PY=venv/bin/python INSTALL=0 MEM_FRACTION=0.9 XLA_FLAGS_VALUE="" DRY_RUN=0
ENVS=()

while (($#)); do
  arg=$1
  shift
  case $arg in
    --) break ;;
    -h | --help) usage; exit 0 ;;
  esac
  split_option "$arg"
  case $opt in
    --install | --dry-run)
      ((!has_val)) || die "option $opt takes no value"
      case $opt in
        --install) INSTALL=1 ;;
        --dry-run) DRY_RUN=1 ;;
      esac
      ;;
    --workdir | --gpus | --python | --mem-fraction | --xla-flags | --env)
      if ((!has_val)); then
        (($#)) || die "option $opt needs a value"
        val=$1
        shift
        [[ $opt == --xla-flags || $val != --* ]] || die "option $opt needs a value (got '$val')"
      fi
      [[ -n $val ]] || die "option $opt needs a non-empty value"
      case $opt in
        --workdir) WORKDIR=$val ;;
        --gpus) [[ $val =~ ^[0-9]+(,[0-9]+)*$ ]] || die "option --gpus needs GPU indices like 0,1,2,3 (got '$val')"
          GPUS=$val ;;
        --python) PY=$val ;;
        --mem-fraction) check_mem_fraction "$val"; MEM_FRACTION=$val ;;
        --xla-flags) XLA_FLAGS_VALUE=$val ;;
        --env) check_env_value "$val"; ENVS+=("$val") ;;
      esac
      ;;
    *) die "unknown option $opt" ;;
  esac
done
R1JAX_ARGS=("$@")  # may be empty: expanded as ${R1JAX_ARGS[@]+...} for bash 3.2 (macOS) under set -u

[[ -n $WORKDIR ]] || die "missing --workdir"
check_r1jax_args ${R1JAX_ARGS[@]+"${R1JAX_ARGS[@]}"}

ENV=(env XLA_PYTHON_CLIENT_MEM_FRACTION="$MEM_FRACTION")
[[ -z $GPUS ]] || ENV+=(CUDA_VISIBLE_DEVICES="$GPUS")
[[ -z $XLA_FLAGS_VALUE ]] || ENV+=(XLA_FLAGS="$XLA_FLAGS_VALUE")
ENV+=(${ENVS[@]+"${ENVS[@]}"})

run cd "$REPO_ROOT"
if ((INSTALL)); then
  [[ $PY != venv/bin/python ]] || run python3 -m venv venv
  run "$PY" -m pip install -q -e ".[cuda]"
fi
if ((!DRY_RUN)) && [[ ! -x $PY ]] && ! command -v "$PY" >/dev/null; then
  die "option --python: '$PY' not found in $REPO_ROOT (create it with --install, or: python3 -m venv venv && venv/bin/pip install -e '.[cuda]')"
fi
if ((DRY_RUN)); then
  show "${ENV[@]}" "$PY" -m r1jax ${R1JAX_ARGS[@]+"${R1JAX_ARGS[@]}"} --workdir="$WORKDIR"
  exit 0
fi
quote_line "${ENV[@]}" "$PY" -m r1jax ${R1JAX_ARGS[@]+"${R1JAX_ARGS[@]}"} --workdir="$WORKDIR"
printf '+ %s\n' "$REPLY" >&2
exec "${ENV[@]}" "$PY" -m r1jax ${R1JAX_ARGS[@]+"${R1JAX_ARGS[@]}"} --workdir="$WORKDIR"
