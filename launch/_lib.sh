# shellcheck shell=bash
# Helpers sourced by the launch scripts: error exits, dry-run-aware command execution and
# shell quoting of the trainer command that runs on a remote machine.

DRY_RUN=0

# die MESSAGE: print an error and exit 2 (the status of a usage error).
die() {
  echo "error: $*" >&2
  echo "run with --help for usage" >&2
  exit 2
}

# run CMD ARGS...: print the command (one line, shell-quoted, prefixed "+ ") and run it unless
# --dry-run was given. The printed line can be pasted back into a shell.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [[ "${DRY_RUN}" == 0 ]]; then
    "$@"
  fi
}

# need_value FLAG ARGC NEXT: fail clearly when FLAG has no value (it is the last argument, or
# the next argument is another option).
need_value() {
  if [[ "$2" -lt 2 || "${3:-}" == --* ]]; then
    die "$1 needs a value"
  fi
}

# require NAME VALUE: fail when a required option was not given.
require() {
  if [[ -z "$2" ]]; then
    die "missing required option $1"
  fi
}

# quote_words ARGS...: the arguments as one shell-quoted string (for ssh --command).
quote_words() {
  local out="" word
  for word in "$@"; do
    out+="$(printf '%q' "${word}") "
  done
  printf '%s' "${out% }"
}

# check_config PATH: the config must be a file of this checkout (it is passed to the trainer
# relative to the repository root).
check_config() {
  if [[ ! -f "${REPO_ROOT}/$1" && ! -f "$1" ]]; then
    die "--config file not found: $1"
  fi
}

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# trim STRING: STRING without leading and trailing whitespace.
trim() {
  local s="$*"
  s="${s#"${s%%[![:space:]]*}"}"
  s="${s%"${s##*[![:space:]]}"}"
  printf '%s' "${s}"
}
