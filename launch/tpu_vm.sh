#!/usr/bin/env bash
# Run one r1jax stage on every host of a Cloud TPU VM slice, creating the slice if needed and
# re-creating it after a preemption (the stage resumes from its workdir). See usage() below.
set -euo pipefail

PROG=launch/tpu_vm.sh
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=launch/lib.sh
source "$REPO_ROOT/launch/lib.sh"

usage() {
  cat <<'EOF'
Usage: launch/tpu_vm.sh --name NAME --zone ZONE --accelerator TYPE --workdir DIR [options] -- R1JAX_ARGS...

Runs `python -m r1jax R1JAX_ARGS --workdir=DIR --config.distributed.num_processes=0` on every
worker of a Cloud TPU VM slice (one process per host; jax.distributed discovers the slice):
  1. create the slice (or reuse it when READY; delete and re-create it when PREEMPTED / gone),
  2. pack the code (`git archive REF`, or the working tree) and scp it to all workers,
  3. unpack it into ~/r1jax on every worker and `pip install -e ".[tpu]"` there,
  4. run the stage on all workers over `gcloud compute tpus tpu-vm ssh --worker=all`,
  5. if the slice was preempted, go back to 1 (at most --max-restarts times); the stage resumes
     from the checkpoints in DIR. A stage that fails on a healthy slice is not restarted.

Required:
  --name NAME            TPU VM (and queued resource) name
  --zone ZONE            e.g. us-east5-a
  --accelerator TYPE     e.g. v5p-64, v5litepod-16, v6e-32, v4-32
  --workdir DIR          the stage's workdir, passed verbatim; use gs://BUCKET/... on multi-host
                         slices (each worker's disk is its own, and is lost with the slice)
Options:
  --project PROJECT      GCP project (default: gcloud's configured project)
  --version RUNTIME      TPU software version (default from the accelerator: v5p: v2-alpha-tpuv5,
                         v5litepod: v2-alpha-tpuv5-lite, v6e: v2-alpha-tpuv6e, else tpu-ubuntu2204-base)
  --spot                 spot capacity (preemptible; cheaper)
  --queued               create through a queued resource (waits for capacity) instead of tpu-vm create
  --ref REF              git ref to ship (default HEAD; resolved to one commit for all restarts)
  --worktree             ship the working tree instead (tracked + untracked, not ignored, files)
  --max-restarts N       re-creations after preemption (default 3; 0 = never)
  --remote-dir DIR       code directory on the workers (default ~/r1jax, ~ being the worker's home)
  --python PY            Python on the workers (default python3)
  --env KEY=VALUE        environment for the stage on the workers (repeatable), e.g. LIBTPU_INIT_ARGS=...
  --create-arg ARG       extra flag for the create command (repeatable), e.g. --create-arg=--reserved
  --no-distributed       do not add --config.distributed.num_processes=0 (configs without a
                         `distributed` field, e.g. experiments/r1_pipeline.py)
  --poll SECONDS         state polling interval (default 30)
  --dry-run              print the commands (one per line, shell-quoted), run nothing
  -h, --help             this text

Everything after -- goes to r1jax verbatim (quote it as you would locally), e.g.
  launch/tpu_vm.sh --name r1 --zone us-east5-a --accelerator v5p-64 --spot --ref main \
      --workdir gs://my-bucket/runs/r1_zero -- --config=experiments/r1_zero.py:qwen2.5-math-1.5b \
      --config.model.init_from=gs://my-bucket/ckpt/Qwen2.5-Math-1.5B --config.data.spec.paths='("/data/a.jsonl",)'
EOF
}

# shellcheck disable=SC2088  # ~ is for the workers' shell, never expanded here
NAME="" ZONE="" PROJECT="" ACCEL="" VERSION="" WORKDIR="" REF=HEAD REMOTE_DIR="~/r1jax" PY=python3
SPOT=0 QUEUED=0 WORKTREE=0 REF_SET=0 DISCOVER=1 DRY_RUN=0 MAX_RESTARTS=3 POLL=30
ENVS=() CREATE_ARGS=()

while (($#)); do
  arg=$1
  shift
  case $arg in
    --) break ;;
    -h | --help) usage; exit 0 ;;
  esac
  split_option "$arg"
  case $opt in
    --spot | --queued | --worktree | --no-distributed | --dry-run)
      ((!has_val)) || die "option $opt takes no value"
      case $opt in
        --spot) SPOT=1 ;;
        --queued) QUEUED=1 ;;
        --worktree) WORKTREE=1 ;;
        --no-distributed) DISCOVER=0 ;;
        --dry-run) DRY_RUN=1 ;;
      esac
      ;;
    --name | --zone | --project | --accelerator | --version | --workdir | --ref | --max-restarts | \
      --remote-dir | --python | --env | --create-arg | --poll)
      if ((!has_val)); then
        (($#)) || die "option $opt needs a value"
        val=$1
        shift
        [[ $opt == --create-arg || $val != --* ]] || die "option $opt needs a value (got '$val')"
      fi
      [[ -n $val ]] || die "option $opt needs a non-empty value"
      case $opt in
        --name) NAME=$val ;;
        --zone) ZONE=$val ;;
        --project) PROJECT=$val ;;
        --accelerator) ACCEL=$val ;;
        --version) VERSION=$val ;;
        --workdir) WORKDIR=$val ;;
        --ref) REF=$val REF_SET=1 ;;
        --max-restarts) is_uint "$val" || die "option --max-restarts needs a number >= 0 (got '$val')"
          MAX_RESTARTS=$val ;;
        --remote-dir) REMOTE_DIR=$val ;;
        --python) PY=$val ;;
        --env) check_env_value "$val"; ENVS+=("$val") ;;
        --create-arg) CREATE_ARGS+=("$val") ;;
        --poll) is_uint "$val" || die "option --poll needs a number of seconds (got '$val')"
          POLL=$val ;;
      esac
      ;;
    *) die "unknown option $opt" ;;
  esac
done
R1JAX_ARGS=("$@")  # may be empty: expanded as ${R1JAX_ARGS[@]+...} for bash 3.2 (macOS) under set -u

[[ -n $NAME ]] || die "missing --name (the TPU VM name)"
[[ -n $ZONE ]] || die "missing --zone"
[[ -n $ACCEL ]] || die "missing --accelerator (e.g. v5p-64)"
[[ -n $WORKDIR ]] || die "missing --workdir (gs://BUCKET/... for a multi-host slice)"
((!WORKTREE || !REF_SET)) || die "options --ref and --worktree: give one (what to ship)"
[[ $NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "option --name: '$NAME' is not a valid TPU name (lowercase letters, digits, -)"
# shellcheck disable=SC2088
case $REMOTE_DIR in
  "" | "~" | "~/" | / | . | ./) die "option --remote-dir: '$REMOTE_DIR' would be wiped on every deploy; name a subdirectory" ;;
esac
check_r1jax_args ${R1JAX_ARGS[@]+"${R1JAX_ARGS[@]}"}
if [[ $WORKDIR != gs://* ]]; then
  printf '%s: warning: --workdir %s is not on GCS: each worker writes its own local copy, which is lost with a preempted slice\n' \
    "$PROG" "$WORKDIR" >&2
fi
if [[ -z $VERSION ]]; then
  case $ACCEL in
    v5p-*) VERSION=v2-alpha-tpuv5 ;;
    v5litepod-* | v5e-*) VERSION=v2-alpha-tpuv5-lite ;;
    v6e-*) VERSION=v2-alpha-tpuv6e ;;
    *) VERSION=tpu-ubuntu2204-base ;;
  esac
fi

GCLOUD_WIDE=(--zone="$ZONE")
[[ -z $PROJECT ]] || GCLOUD_WIDE+=(--project="$PROJECT")
TPU=(gcloud compute tpus tpu-vm)
QR=(gcloud compute tpus queued-resources)
TARBALL="${TMPDIR:-/tmp}/r1jax-$NAME.tar.gz"
REMOTE_TARBALL=r1jax-src.tar.gz

# The remote code directory, quoted for the worker's shell; a leading ~/ stays unquoted so the
# *worker's* shell expands it (locally it is only ever inside a quoted --command payload).
# shellcheck disable=SC2088
if [[ $REMOTE_DIR == "~/"* ]]; then
  quote "${REMOTE_DIR#\~/}"
  RDIR="~/$REPLY"
else
  quote "$REMOTE_DIR"
  RDIR=$REPLY
fi
quote "$PY"
RPY=$REPLY

# Deploy payload (runs on every worker): stop a stage a dropped ssh session left running (the
# pid file the run payload writes, checked to be r1jax), unpack the code, install it.
# shellcheck disable=SC2016  # $vars are for the worker's shell
STOP_STALE='old=$(cat ~/.r1jax-stage.pid 2>/dev/null || true); if [ -n "$old" ] && ps -o args= -p "$old" | grep -q -- "-m r1jax"; then echo "stopping stale r1jax stage (pid $old)"; kill "$old"; for _ in $(seq 300); do kill -0 "$old" 2>/dev/null || break; sleep 1; done; if kill -0 "$old" 2>/dev/null; then kill -9 "$old"; fi; fi'
DEPLOY="set -e; $STOP_STALE; rm -rf $RDIR; mkdir -p $RDIR; tar -xzf $REMOTE_TARBALL -C $RDIR; cd $RDIR; $RPY -m pip install -q -e '.[tpu]'"

# Run payload: the stage itself, its argv re-quoted for the worker's shell.
STAGE_ARGV=(${R1JAX_ARGS[@]+"${R1JAX_ARGS[@]}"} --workdir="$WORKDIR")
((!DISCOVER || HAS_NUM_PROCESSES)) || STAGE_ARGV+=(--config.distributed.num_processes=0)
quote_line "${STAGE_ARGV[@]}"
STAGE_Q=$REPLY
ENV_Q=""
if ((${#ENVS[@]})); then
  quote_line env "${ENVS[@]}"
  ENV_Q="$REPLY "
fi
# shellcheck disable=SC2016  # $$ is the worker shell's pid, which exec hands to python
RUN_STAGE="cd $RDIR && echo \$\$ > ~/.r1jax-stage.pid && exec $ENV_Q$RPY -m r1jax $STAGE_Q"
SSH_KEEPALIVE=(--ssh-flag=-oServerAliveInterval=60 --ssh-flag=-oServerAliveCountMax=10)

# State of the slice: READY / ACTIVE / PREEMPTED / SUSPENDED / ..., or NOT_FOUND (the describe
# fails). A queued resource that is ACTIVE but whose node is not READY gives NODE_<node state>.
# Dry run: prints the query and answers NOT_FOUND.
slice_state() {
  if ((QUEUED)); then
    query "${QR[@]}" describe "$NAME" "${GCLOUD_WIDE[@]}" --format='value(state.state)'
    [[ $REPLY == ACTIVE ]] || return 0
    query "${TPU[@]}" describe "$NAME" "${GCLOUD_WIDE[@]}" --format='value(state)'
    if [[ $REPLY == READY ]]; then REPLY=ACTIVE; else REPLY=NODE_$REPLY; fi
  else
    query "${TPU[@]}" describe "$NAME" "${GCLOUD_WIDE[@]}" --format='value(state)'
  fi
}

# query CMD...: REPLY = CMD's output, or NOT_FOUND when it fails or prints nothing.
query() {
  if ((DRY_RUN)); then
    show "$@"
    REPLY=NOT_FOUND
  elif REPLY=$("$@" 2>/dev/null) && [[ -n $REPLY ]]; then
    :
  else
    REPLY=NOT_FOUND
  fi
}

delete_slice() {
  if ((QUEUED)); then
    run "${QR[@]}" delete "$NAME" "${GCLOUD_WIDE[@]}" --force --quiet
  else
    run "${TPU[@]}" delete "$NAME" "${GCLOUD_WIDE[@]}" --quiet
  fi
}

create_slice() {
  local spot=()
  ((!SPOT)) || spot=(--spot)
  if ((QUEUED)); then
    run "${QR[@]}" create "$NAME" "${GCLOUD_WIDE[@]}" --node-id="$NAME" --accelerator-type="$ACCEL" \
      --runtime-version="$VERSION" ${spot[@]+"${spot[@]}"} ${CREATE_ARGS[@]+"${CREATE_ARGS[@]}"}
  else
    run "${TPU[@]}" create "$NAME" "${GCLOUD_WIDE[@]}" --accelerator-type="$ACCEL" --version="$VERSION" \
      ${spot[@]+"${spot[@]}"} ${CREATE_ARGS[@]+"${CREATE_ARGS[@]}"}
  fi
}

# Waits until the slice is READY (ACTIVE for a queued resource); fails if it is lost meanwhile.
wait_ready() {
  if ((DRY_RUN)); then
    note "then, every ${POLL}s until it prints ACTIVE (and the node READY):"
    slice_state
    return 0
  fi
  while :; do
    slice_state
    case $REPLY in
      READY | ACTIVE) return 0 ;;
      NOT_FOUND | PREEMPTED | TERMINATED | STOPPED | SUSPENDED | SUSPENDING | FAILED | DELETING | HIDDEN | \
        NODE_NOT_FOUND | NODE_PREEMPTED | NODE_TERMINATED | NODE_STOPPED | NODE_DELETING | NODE_HIDDEN)
        note "slice $NAME is $REPLY while waiting for it"
        return 1 ;;
    esac
    note "slice $NAME is $REPLY; waiting"
    sleep "$POLL"
  done
}

# Makes the slice exist and be ready: reuse, wait for, or (re-)create it.
ensure_slice() {
  slice_state
  case $REPLY in
    READY | ACTIVE)
      note "reusing slice $NAME ($REPLY)"
      return 0 ;;
    NOT_FOUND) ;;
    CREATING | STARTING | RESTARTING | REPAIRING | ACCEPTED | PROVISIONING | WAITING_FOR_RESOURCES)
      note "slice $NAME is $REPLY; waiting for it"
      if wait_ready; then return 0; fi
      delete_slice || true ;;
    DELETING)
      note "slice $NAME is being deleted; waiting for it to go"
      while [[ $REPLY == DELETING ]]; do sleep "$POLL"; slice_state; done
      [[ $REPLY == NOT_FOUND ]] || { delete_slice || return 1; } ;;
    *)
      note "slice $NAME is $REPLY: deleting it to create it again"
      delete_slice || return 1
      ;;
  esac
  create_slice || return 1
  if ((QUEUED)); then wait_ready || return 1; fi
}

# The code to ship, as a .tar.gz: `git archive REF`; with --worktree, `git archive` of a tree
# written from a scratch index holding the working tree (modified, deleted and untracked files;
# .gitignore respected), which leaves the repository's own index and refs untouched.
pack_code() {
  if ((!WORKTREE)); then
    run git -C "$REPO_ROOT" archive --format=tar.gz -o "$TARBALL" "$REF"
    return
  fi
  local index="$TARBALL.index" git_index tree
  git_index=(env GIT_INDEX_FILE="$index" git -C "$REPO_ROOT")
  run rm -f "$index"
  run "${git_index[@]}" read-tree HEAD
  run "${git_index[@]}" add -A
  if ((DRY_RUN)); then
    quote_line "${git_index[@]}" write-tree
    local write_tree=$REPLY
    quote_line git -C "$REPO_ROOT" archive --format=tar.gz -o "$TARBALL"
    # shellcheck disable=SC2016  # a literal $(...) in the listing
    printf '%s "$(%s)"\n' "$REPLY" "$write_tree"
  else
    tree=$("${git_index[@]}" write-tree)
    rm -f "$index"
    note "shipping the working tree of $REPO_ROOT (HEAD $(git -C "$REPO_ROOT" rev-parse --short HEAD) + changes) as tree $tree"
    run git -C "$REPO_ROOT" archive --format=tar.gz -o "$TARBALL" "$tree"
  fi
}

deploy() {
  run "${TPU[@]}" scp "$TARBALL" "$NAME:$REMOTE_TARBALL" "${GCLOUD_WIDE[@]}" --worker=all &&
    run "${TPU[@]}" ssh "$NAME" "${GCLOUD_WIDE[@]}" --worker=all --command="$DEPLOY"
}

run_stage() {
  run "${TPU[@]}" ssh "$NAME" "${GCLOUD_WIDE[@]}" --worker=all "${SSH_KEEPALIVE[@]}" --command="$RUN_STAGE"
}

if ((!DRY_RUN)); then
  command -v gcloud >/dev/null || die "gcloud not found (install the Google Cloud CLI, or use --dry-run)"
  if ((!WORKTREE)); then
    commit=$(git -C "$REPO_ROOT" rev-parse --verify -q "$REF^{commit}") || die "option --ref: '$REF' is not a commit in $REPO_ROOT"
    note "shipping $REF = $commit"
    REF=$commit
  fi
fi

kind="$ACCEL, $VERSION"
((!SPOT)) || kind+=", spot"
((!QUEUED)) || kind+=", queued resource"
note "r1jax on TPU slice $NAME ($kind) in $ZONE; workdir $WORKDIR"
pack_code
restarts=0
while :; do
  note "attempt $((restarts + 1)) of $((MAX_RESTARTS + 1)): create the slice unless it is READY (a describe that fails means it does not exist)"
  rc=0
  { ensure_slice && deploy && run_stage; } || rc=$?
  if ((DRY_RUN)); then
    note "if that fails and the slice is then PREEMPTED / SUSPENDED / gone: delete it, create it again and repeat from the describe above (at most $MAX_RESTARTS times), resuming from $WORKDIR"
    exit 0
  fi
  if ((rc == 0)); then
    if ((QUEUED)); then quote_line "${QR[@]}" delete "$NAME" "${GCLOUD_WIDE[@]}" --force
    else quote_line "${TPU[@]}" delete "$NAME" "${GCLOUD_WIDE[@]}"; fi
    note "stage finished; slice $NAME is still up (delete it: $REPLY)"
    exit 0
  fi
  sleep "$POLL"  # a preempted slice takes a moment to leave READY
  slice_state
  case $REPLY in
    READY | ACTIVE)
      if ((rc != 255)); then
        note "stage failed (exit $rc) on a healthy slice: not a preemption, not restarting"
        exit "$rc"
      fi
      note "ssh failed (exit 255) but slice $NAME is $REPLY: running the stage again" ;;
    *) note "slice $NAME is $REPLY (exit $rc): preempted" ;;
  esac
  if ((restarts >= MAX_RESTARTS)); then
    note "giving up after $restarts restarts (--max-restarts $MAX_RESTARTS)"
    exit "$rc"
  fi
  restarts=$((restarts + 1))
  note "restart $restarts of $MAX_RESTARTS: resuming from $WORKDIR"
done
