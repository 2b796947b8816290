# shellcheck shell=bash
# Helpers shared by the launchers in this directory (sourced, never run on its own).

# quote ARG: sets REPLY to ARG quoted for any POSIX shell (bash, sh, zsh; and Python's shlex):
# bare when it holds only characters no shell treats specially, else single-quoted with each
# ' written as '\''; in --option=VALUE and NAME=VALUE only the value is quoted (--format='value(state)').
# Never $'...' (printf %q), which sh and shlex do not read.
quote() {
  local safe='^[A-Za-z0-9_@%+=:,./-]+$'
  if [[ -n $1 && $1 =~ $safe ]]; then
    REPLY=$1
  elif [[ $1 =~ ^(--?[A-Za-z0-9][A-Za-z0-9_.-]*=|[A-Za-z_][A-Za-z0-9_]*=)(.*)$ ]]; then
    local opt=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
    REPLY="$opt'${val//\'/\'\\\'\'}'"
  else
    REPLY="'${1//\'/\'\\\'\'}'"
  fi
}

# quote_line ARGS...: sets REPLY to the command line, every argument quoted, space-separated.
quote_line() {
  local out="" a
  for a in "$@"; do
    quote "$a"
    out+="${out:+ }$REPLY"
  done
  REPLY=$out
}

# show ARGS...: prints the command line, pasteable into a shell.
show() {
  quote_line "$@"
  printf '%s\n' "$REPLY"
}

# run ARGS...: dry run: print it (stdout); else log it (stderr, "+ " first) and run it.
run() {
  if ((DRY_RUN)); then
    show "$@"
  else
    quote_line "$@"
    printf '+ %s\n' "$REPLY" >&2
    "$@"
  fi
}

# note TEXT...: a comment line in the dry-run listing (pasting it does nothing); a log line otherwise.
note() {
  if ((DRY_RUN)); then
    printf '# %s\n' "$*"
  else
    printf '[%s] %s\n' "$(date '+%F %T')" "$*" >&2
  fi
}

# die MESSAGE: usage error (exit 2), naming the script and pointing at --help.
die() {
  printf '%s: %s\n' "$PROG" "$1" >&2
  printf "Run '%s --help' for usage.\n" "$PROG" >&2
  exit 2
}

# check_r1jax_args ARGS...: the r1jax arguments after --: a --config is required, --workdir is the
# launcher's own option. Sets (for the caller) HAS_NUM_PROCESSES=1 when they already set distributed.num_processes.
# shellcheck disable=SC2034  # HAS_NUM_PROCESSES is read by the launchers
check_r1jax_args() {
  local a has_config=0
  HAS_NUM_PROCESSES=0
  for a in "$@"; do
    case $a in
      --config | --config=*) has_config=1 ;;
      --workdir | --workdir=*) die "give --workdir to the launcher (before --), not to r1jax" ;;
      --config.distributed.num_processes | --config.distributed.num_processes=*) HAS_NUM_PROCESSES=1 ;;
    esac
  done
  ((has_config)) || die "missing r1jax --config=FILE[:PRESET] after -- (e.g. -- --config=experiments/r1_zero.py:tiny)"
}

# split_option ARG: sets opt, val and has_val (1 for --opt=VALUE, 0 for --opt) for the launchers'
# option loops; a bare argument is a usage error (r1jax arguments go after --).
# shellcheck disable=SC2034  # opt, val and has_val are read by the launchers
split_option() {
  case $1 in
    --*=*) opt=${1%%=*} val=${1#*=} has_val=1 ;;
    --*) opt=$1 val="" has_val=0 ;;
    *) die "unexpected argument '$1' (r1jax arguments go after --)" ;;
  esac
}

# check_env_value VALUE: the value of --env is KEY=VALUE.
check_env_value() {
  [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "option --env needs KEY=VALUE (got '$1')"
}

# check_mem_fraction VALUE: the value of --mem-fraction is a number in (0, 1].
check_mem_fraction() {
  [[ $1 =~ ^(0?\.[0-9]+|1(\.0*)?)$ ]] || die "option --mem-fraction needs a number in (0, 1] (got '$1')"
}

# is_uint VALUE: a non-negative integer.
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
