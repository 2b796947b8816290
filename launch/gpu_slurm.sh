#!/usr/bin/env bash
# Submit one r1jax stage to SLURM GPU nodes (multi-controller JAX: jax.distributed.initialize()
# reads the SLURM environment). Writes the sbatch script and submits it. See usage() below.
set -euo pipefail

PROG=launch/gpu_slurm.sh
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=launch/lib.sh
source "$REPO_ROOT/launch/lib.sh"

usage() {
  cat <<'EOF'
Usage: launch/gpu_slurm.sh --workdir DIR [--nodes N] [--gpus-per-node G] [options] -- R1JAX_ARGS...

Submits (sbatch, script on stdin) a job that runs, on every node,
  srun PYTHON -m r1jax R1JAX_ARGS --workdir=DIR --config.distributed.num_processes=0
num_processes=0 makes r1jax call jax.distributed.initialize() with no arguments; JAX reads the
coordinator (first node, port from the job id), process count and id from SLURM_* variables.

Processes: one per node by default, each driving all G GPUs of its node
(--config.distributed.local_device_ids=0,..,G-1 is added: without it JAX's SLURM detection would
give each process only GPU $SLURM_LOCALID).
--per-gpu: one process per GPU (ntasks-per-node = G; JAX picks GPU SLURM_LOCALID; srun
--gpu-bind=none so every task sees all the node's GPUs and JAX's index is right).
The repository and the workdir must be on a filesystem all nodes share; PYTHON needs r1jax
installed with the cuda extra (pip install -e ".[cuda]").

Required:
  --workdir DIR          the stage's workdir (shared filesystem), passed verbatim
Options:
  --nodes N              nodes (default 1)
  --gpus-per-node G      GPUs per node (default 8)
  --per-gpu              one process per GPU instead of one per node
  --cpus-per-task N      CPUs for each process (data loading; SLURM's default is 1)
  --job-name NAME        default r1jax
  --partition P, --account A, --qos Q, --time T (e.g. 24:00:00), --mem M (e.g. 0 = all)
  --output PATTERN       log file (default slurm-%x-%j.out, in the directory you submit from)
  --exclusive            whole nodes only
  --requeue              let SLURM requeue the job (preemption, node failure); it resumes from DIR
  --sbatch-arg ARG       extra #SBATCH line (repeatable), e.g. --sbatch-arg=--constraint=h100
  --srun-arg ARG         extra srun flag (repeatable), e.g. --srun-arg=--container-image=...
  --setup LINE           shell line run before srun (repeatable), e.g. --setup='module load cuda/12.4'
  --python PY            Python on the nodes (default venv/bin/python, relative to the repository)
  --repo-dir DIR         repository on the nodes (default: this checkout, REPO_ROOT_HERE)
  --mem-fraction F       XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.9; JAX's own default is 0.75)
  --xla-flags FLAGS      XLA_FLAGS for the job (see launch/gpu.sh --help for common ones)
  --env KEY=VALUE        exported in the job (repeatable), e.g. --env NCCL_DEBUG=WARN
  --no-distributed       do not add --config.distributed.num_processes=0
  --dry-run              print the sbatch command with its script (a here-document), submit nothing
  -h, --help             this text

Preemption / time limit: the script has `#SBATCH --signal=TERM@120`, so each process gets SIGTERM
2 minutes before the time limit and r1jax saves a checkpoint and exits; submitting again (or
--requeue) resumes from DIR.

Example:
  launch/gpu_slurm.sh --nodes 2 --partition gpu --time 24:00:00 --workdir /shared/runs/r1_zero -- \
      --config=experiments/r1_zero.py:qwen2.5-math-1.5b --config.model.init_from=/shared/ckpt/Qwen2.5-Math-1.5B
EOF
}

WORKDIR="" NODES=1 GPUS=8 PER_GPU=0 CPUS="" JOB_NAME=r1jax PARTITION="" ACCOUNT="" QOS="" TIME="" MEM=""
OUTPUT="slurm-%x-%j.out" EXCLUSIVE=0 REQUEUE=0 PY=venv/bin/python REPO_DIR=$REPO_ROOT MEM_FRACTION=0.9
XLA_FLAGS_VALUE="" DISCOVER=1 DRY_RUN=0
SBATCH_ARGS=() SRUN_ARGS=() SETUP=() ENVS=()

while (($#)); do
  arg=$1
  shift
  case $arg in
    --) break ;;
    -h | --help) usage | sed "s|REPO_ROOT_HERE|$REPO_ROOT|"; exit 0 ;;
  esac
  split_option "$arg"
  case $opt in
    --per-gpu | --exclusive | --requeue | --no-distributed | --dry-run)
      ((!has_val)) || die "option $opt takes no value"
      case $opt in
        --per-gpu) PER_GPU=1 ;;
        --exclusive) EXCLUSIVE=1 ;;
        --requeue) REQUEUE=1 ;;
        --no-distributed) DISCOVER=0 ;;
        --dry-run) DRY_RUN=1 ;;
      esac
      ;;
    --workdir | --nodes | --gpus-per-node | --cpus-per-task | --job-name | --partition | --account | \
      --qos | --time | --mem | --output | --sbatch-arg | --srun-arg | --setup | --python | --repo-dir | \
      --mem-fraction | --xla-flags | --env)
      if ((!has_val)); then
        (($#)) || die "option $opt needs a value"
        val=$1
        shift
        case $opt in
          --sbatch-arg | --srun-arg | --setup | --xla-flags) ;;
          *) [[ $val != --* ]] || die "option $opt needs a value (got '$val')" ;;
        esac
      fi
      [[ -n $val ]] || die "option $opt needs a non-empty value"
      case $opt in
        --workdir) WORKDIR=$val ;;
        --nodes) [[ $val =~ ^[1-9][0-9]*$ ]] || die "option --nodes needs a number >= 1 (got '$val')"
          NODES=$val ;;
        --gpus-per-node) [[ $val =~ ^[1-9][0-9]*$ ]] || die "option --gpus-per-node needs a number >= 1 (got '$val')"
          GPUS=$val ;;
        --cpus-per-task) [[ $val =~ ^[1-9][0-9]*$ ]] || die "option --cpus-per-task needs a number >= 1 (got '$val')"
          CPUS=$val ;;
        --job-name) JOB_NAME=$val ;;
        --partition) PARTITION=$val ;;
        --account) ACCOUNT=$val ;;
        --qos) QOS=$val ;;
        --time) TIME=$val ;;
        --mem) MEM=$val ;;
        --output) OUTPUT=$val ;;
        --sbatch-arg) [[ $val == -* ]] || die "option --sbatch-arg needs an sbatch flag such as --constraint=h100 (got '$val')"
          SBATCH_ARGS+=("$val") ;;
        --srun-arg) [[ $val == -* ]] || die "option --srun-arg needs an srun flag (got '$val')"
          SRUN_ARGS+=("$val") ;;
        --setup) SETUP+=("$val") ;;
        --python) PY=$val ;;
        --repo-dir) REPO_DIR=$val ;;
        --mem-fraction) check_mem_fraction "$val"; MEM_FRACTION=$val ;;
        --xla-flags) XLA_FLAGS_VALUE=$val ;;
        --env) check_env_value "$val"; ENVS+=("$val") ;;
      esac
      ;;
    *) die "unknown option $opt" ;;
  esac
done
R1JAX_ARGS=("$@")  # may be empty: expanded as ${R1JAX_ARGS[@]+...} for bash 3.2 (macOS) under set -u

[[ -n $WORKDIR ]] || die "missing --workdir (a directory all nodes share)"
check_r1jax_args ${R1JAX_ARGS[@]+"${R1JAX_ARGS[@]}"}

STAGE_ARGV=(${R1JAX_ARGS[@]+"${R1JAX_ARGS[@]}"} --workdir="$WORKDIR")
((!DISCOVER || HAS_NUM_PROCESSES)) || STAGE_ARGV+=(--config.distributed.num_processes=0)
if ((!PER_GPU)); then  # each process drives all its node's GPUs
  ids=0
  for ((i = 1; i < GPUS; i++)); do ids+=",$i"; done
  STAGE_ARGV+=(--config.distributed.local_device_ids="$ids")
fi
SRUN=(srun --kill-on-bad-exit=1)
[[ -z $CPUS ]] || SRUN+=(--cpus-per-task="$CPUS")  # srun no longer inherits sbatch's (SLURM >= 22.05)
((!PER_GPU)) || SRUN+=(--gpu-bind=none)
SRUN+=(${SRUN_ARGS[@]+"${SRUN_ARGS[@]}"} "$PY" -m r1jax "${STAGE_ARGV[@]}")

# The job script, one line per array element.
S=("#!/bin/bash")
# sbatch reads #SBATCH lines itself (no shell): values go in raw, so they may not need quoting.
sb() {
  [[ $1 =~ ^[^[:space:]\'\"\\#]+$ ]] || die "sbatch option '$1': spaces, quotes, \\ and # are not allowed in #SBATCH lines"
  S+=("#SBATCH $1")
}
sb --job-name="$JOB_NAME"
sb --nodes="$NODES"
if ((PER_GPU)); then sb --ntasks-per-node="$GPUS"; else sb --ntasks-per-node=1; fi
sb --gpus-per-node="$GPUS"
[[ -z $CPUS ]] || sb --cpus-per-task="$CPUS"
[[ -z $PARTITION ]] || sb --partition="$PARTITION"
[[ -z $ACCOUNT ]] || sb --account="$ACCOUNT"
[[ -z $QOS ]] || sb --qos="$QOS"
[[ -z $TIME ]] || sb --time="$TIME"
[[ -z $MEM ]] || sb --mem="$MEM"
((!EXCLUSIVE)) || sb --exclusive
sb --output="$OUTPUT"
sb --signal=TERM@120
if ((REQUEUE)); then sb --requeue; sb --open-mode=append; fi
for a in ${SBATCH_ARGS[@]+"${SBATCH_ARGS[@]}"}; do sb "$a"; done
S+=("# r1jax stage: $( ((PER_GPU)) && echo "one process per GPU" || echo "one process per node, each on all $GPUS GPUs"), $NODES node(s)")
S+=("set -eo pipefail  # not -u: environment modules (module load) often read unset variables")
quote "$REPO_DIR"
S+=("cd $REPLY")
quote "XLA_PYTHON_CLIENT_MEM_FRACTION=$MEM_FRACTION"
S+=("export $REPLY")
if [[ -n $XLA_FLAGS_VALUE ]]; then
  quote "XLA_FLAGS=$XLA_FLAGS_VALUE"
  S+=("export $REPLY")
fi
for e in ${ENVS[@]+"${ENVS[@]}"}; do
  quote "$e"
  S+=("export $REPLY")
done
for line in ${SETUP[@]+"${SETUP[@]}"}; do S+=("$line"); done
# shellcheck disable=SC2016  # for the job's shell
S+=('echo "r1jax: job $SLURM_JOB_ID on $SLURM_JOB_NUM_NODES node(s): $SLURM_JOB_NODELIST"')
quote_line "${SRUN[@]}"
S+=("$REPLY")
SCRIPT=$(printf '%s\n' "${S[@]}")

EOF_MARK=R1JAX_SBATCH
if ((DRY_RUN)); then
  printf 'sbatch --parsable <<'\''%s'\''\n%s\n%s\n' "$EOF_MARK" "$SCRIPT" "$EOF_MARK"
  exit 0
fi
command -v sbatch >/dev/null || die "sbatch not found (run this on a SLURM login node, or use --dry-run)"
printf '+ sbatch --parsable <<%s\n%s\n%s\n' "$EOF_MARK" "$SCRIPT" "$EOF_MARK" >&2
job=$(sbatch --parsable <<<"$SCRIPT")
printf 'submitted job %s; log: %s (squeue -j %s; scancel %s)\n' "$job" "$OUTPUT" "${job%%;*}" "${job%%;*}"
