#!/usr/bin/env bash
# The batch script that launch/slurm.sh submits with sbatch (it is not meant to be run by hand).
# It starts the trainer once per task with srun and, when the trainer exits with 75 (EX_TEMPFAIL:
# it was sent SIGTERM before the time limit or on preemption and saved a checkpoint), requeues
# this job, which then resumes from the newest checkpoint in the workdir.
#
# sbatch runs a spooled copy of this file with the working directory set to the repository root
# (sbatch --chdir), so paths here are relative to that root, not to this file.
set -euo pipefail
# shellcheck source=launch/_lib.sh
source launch/_lib.sh

usage() {
  cat <<'USAGE'
Usage: launch/slurm_job.sh [--max-restarts N] [--cpus-per-task C] [--env NAME=VALUE ...]
                           [--dry-run] -- TRAINER ARGS...

Runs `srun env NAME=VALUE... TRAINER ARGS...` (one trainer process per SLURM task); if it exits
with 75 and $SLURM_RESTART_COUNT < N, runs `scontrol requeue $SLURM_JOB_ID`.
  --max-restarts N   requeue at most N times (default 20)
  --cpus-per-task C  CPUs of each task (srun does not inherit sbatch's value since SLURM 22.05)
  --env NAME=VALUE   environment of every task (repeatable)
  --resubmit CMD     printed as the way to continue when requeueing is refused
  --dry-run          print the commands without running them
  -h, --help         this help
USAGE
}

EX_TEMPFAIL="${EXIT_PREEMPTED}"  # 75, from _lib.sh (jaxssl/exit_codes.py PREEMPTED)
MAX_RESTARTS=20 RESUBMIT=""
ENV_VARS=() SRUN=(srun --kill-on-bad-exit=0)
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --max-restarts) need_value "$1" $# "${2:-}"; MAX_RESTARTS="$2"; shift 2 ;;
    --cpus-per-task) need_value "$1" $# "${2:-}"; SRUN+=(--cpus-per-task "$2"); shift 2 ;;
    --env) need_value "$1" $# "${2:-}"; ENV_VARS+=("$2"); shift 2 ;;
    --resubmit) need_value "$1" $# "${2:-}"; RESUBMIT="$2"; shift 2 ;;
    --) shift; break ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ $# -gt 0 ]] || die "no trainer command after --"
[[ "${MAX_RESTARTS}" =~ ^[0-9]+$ ]] || die "--max-restarts must be an integer >= 0"

JOB_ID="${SLURM_JOB_ID:-JOB_ID}"
RESTARTS="${SLURM_RESTART_COUNT:-0}"
echo "jaxssl job ${JOB_ID}: restart ${RESTARTS} of at most ${MAX_RESTARTS}, on ${SLURM_JOB_NUM_NODES:-?} node(s)"

# Preemption signals every process of the job, this shell included. Without a trap bash would
# die at once; with one it keeps waiting for srun (the trainers are checkpointing) and then
# decides whether to requeue.
trap 'echo "batch shell: SIGTERM received; waiting for the trainer to checkpoint and exit"' TERM

# --kill-on-bad-exit=0: the trainers save a checkpoint together and exit 75 each; killing the
# others when the first one exits would turn srun's status into 128 + SIGKILL and hide the 75.
# A crashed trainer still ends the step: its peers' jax.distributed heartbeats fail.
rc=0
run "${SRUN[@]}" env ${ENV_VARS[@]+"${ENV_VARS[@]}"} "$@" || rc=$?

if [[ "${DRY_RUN}" == 1 ]]; then
  echo "# if the trainer exits ${EX_TEMPFAIL} and SLURM_RESTART_COUNT < ${MAX_RESTARTS}:"
  run scontrol requeue "${JOB_ID}"
  exit 0
fi
if [[ "${rc}" == "${EX_TEMPFAIL}" ]]; then
  if (( RESTARTS < MAX_RESTARTS )); then
    echo "trainer exited ${EX_TEMPFAIL} (checkpoint saved): requeueing job ${JOB_ID}"
    if run scontrol requeue "${JOB_ID}"; then
      exit 0
    fi
    echo "error: scontrol requeue ${JOB_ID} failed (is requeueing allowed on this cluster?)" >&2
  else
    echo "trainer exited ${EX_TEMPFAIL} but the job was already requeued ${RESTARTS} times" \
      "(--max-restarts ${MAX_RESTARTS}); not requeueing" >&2
  fi
  if [[ -n "${RESUBMIT}" ]]; then
    echo "to continue from the last checkpoint, run again: ${RESUBMIT}" >&2
  fi
fi
exit "${rc}"
