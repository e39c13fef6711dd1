# shellcheck shell=bash
# Helpers sourced by the launch scripts: error exits, dry-run-aware command execution and
# shell quoting of the trainer command that runs on a remote machine.

DRY_RUN=0

# Exit status of a trainer stopped by SIGTERM/SIGINT after saving a checkpoint (sysexits
# EX_TEMPFAIL): "run me again to resume". The same value as jaxssl/exit_codes.py PREEMPTED,
# which lists every exit status; tests/reliability/test_launch_restarts.py checks they agree.
EXIT_PREEMPTED=75
# How many times run_trainer re-runs a preempted trainer (--max-restarts).
MAX_RESTARTS=3

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

# run_trainer CMD ARGS...: run (and print, as `run` does) the trainer command; while it exits
# with EXIT_PREEMPTED, run it again (it resumes from its newest checkpoint), at most MAX_RESTARTS
# times, then exit with its status. A SIGTERM or SIGINT sent to this script itself (Ctrl-C, a
# scheduler stopping the job: the trainer gets it too, saves and exits 75) ends the loop instead:
# whoever stopped the job decides whether to resume it.
run_trainer() {
  if [[ "${DRY_RUN}" == 1 ]]; then
    run "$@"
    echo "# exit ${EXIT_PREEMPTED} (preempted, checkpoint saved) runs the command above again" \
      "to resume, at most ${MAX_RESTARTS} times"
    return 0
  fi
  local restarts=0 status stopped=""
  trap 'stopped=1' TERM INT
  while true; do
    status=0
    run "$@" || status=$?
    if [[ "${status}" != "${EXIT_PREEMPTED}" || -n "${stopped}" ||
          "${restarts}" -ge "${MAX_RESTARTS}" ]]; then
      trap - TERM INT
      return "${status}"
    fi
    restarts=$((restarts + 1))
    echo "trainer preempted (exit ${EXIT_PREEMPTED}): resuming, restart ${restarts} of" \
      "${MAX_RESTARTS}" >&2
  done
}

# check_max_restarts VALUE: --max-restarts must be a non-negative integer.
check_max_restarts() {
  if [[ ! "$1" =~ ^[0-9]+$ ]]; then
    die "--max-restarts must be a non-negative integer, got '$1'"
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
