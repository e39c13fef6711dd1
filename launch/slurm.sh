#!/usr/bin/env bash
# Pretrain on several GPU nodes of a SLURM cluster: submit launch/slurm_job.sh with sbatch. Every
# task runs the trainer with JAXSSL_DISTRIBUTED=auto, so jax.distributed.initialize() reads the
# coordinator, process count and process id from SLURM's environment (SLURM_STEP_NODELIST,
# SLURM_NTASKS, SLURM_PROCID). SLURM sends SIGTERM shortly before the time limit; the trainer
# saves a checkpoint and exits 75, and the job requeues itself to resume from the workdir.
set -euo pipefail
# shellcheck source=launch/_lib.sh
source "$(dirname "$0")/_lib.sh"

usage() {
  cat <<'USAGE'
Usage: launch/slurm.sh --config configs/FILE.py --workdir /shared/DIR [options] [--config.x=y ...]

Submits one batch job of --nodes nodes. The checkout, the Python environment and the workdir must
be on storage every node sees (the job runs in this checkout; checkpoints go to the workdir).

Required:
  --config PATH          config file (relative to the repository root, or an absolute path)
  --workdir DIR          absolute path on shared storage: checkpoints, metrics, plots and the job
                         log slurm-JOBID.out (re-submitting with the same workdir resumes)
Layout:
  --nodes N              nodes (default 1)
  --gpus-per-node G      GPUs per node (default 8)
  --per gpu|node         one trainer process per GPU (default; JAX gives process i of a node
                         GPU i, from SLURM_LOCALID) or one per node driving its G GPUs
  --cpus-per-task C      CPUs per process for the data pipeline (default 8 per GPU)
Scheduling:
  --time T               wall-clock limit per run, e.g. 24:00:00 (default 24:00:00)
  --partition P          --account A          --qos Q          --constraint C
  --job-name NAME        (default: jaxssl-CONFIG)
  --signal-lead S        SIGTERM the trainer S seconds before the time limit, time to save a
                         checkpoint (default 300)
  --max-restarts N       requeue at most N times after a checkpoint-and-exit 75 (default 20)
  --sbatch-arg ARG       extra sbatch option, e.g. --sbatch-arg=--exclusive (repeatable)
Environment:
  --python BIN           Python on the compute nodes, e.g. /shared/venv/bin/python (default:
                         python3)
  --install              first `pip install -e ".[train]" "jax[cuda12]"` with BIN on this host
  --mem-fraction F       share of each GPU's memory JAX preallocates (default 0.9)
  --xla-flags FLAGS      extra XLA_FLAGS, appended to --xla_gpu_enable_latency_hiding_scheduler
  --coordinator-port P   port of the jax.distributed coordinator on the first node (default:
                         JAX derives one from the job id)
Other:
  --dry-run              print every command (sbatch and what the job runs) without running it
  -h, --help             this help
Any --config.FIELD=VALUE argument is passed to the trainer as an override.

Example (4 nodes x 8 GPUs, 1024 images per step = 32 per GPU):
  launch/slurm.sh --config configs/dino_vits16_imagenet.py --workdir /shared/runs/dino \
    --nodes 4 --partition gpu --time 48:00:00 --python /shared/venv/bin/python
USAGE
}

CONFIG="" WORKDIR="" NODES=1 GPUS_PER_NODE=8 PER="gpu" CPUS="" TIME="24:00:00" PARTITION=""
ACCOUNT="" QOS="" CONSTRAINT="" JOB_NAME="" SIGNAL_LEAD=300 MAX_RESTARTS=20 PYTHON="python3"
INSTALL=0 MEM_FRACTION="0.9" EXTRA_XLA="" PORT=""
OVERRIDES=() SBATCH_EXTRA=()
RESUBMIT_ARGS=()  # this command line without --dry-run: how to continue by hand
for arg in "$@"; do
  [[ "${arg}" == --dry-run ]] || RESUBMIT_ARGS+=("${arg}")
done
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --install) INSTALL=1; shift ;;
    --config) need_value "$1" $# "${2:-}"; CONFIG="$2"; shift 2 ;;
    --config=*) CONFIG="${1#*=}"; shift ;;
    --config.*=*) OVERRIDES+=("$1"); shift ;;
    --workdir) need_value "$1" $# "${2:-}"; WORKDIR="$2"; shift 2 ;;
    --workdir=*) WORKDIR="${1#*=}"; shift ;;
    --nodes) need_value "$1" $# "${2:-}"; NODES="$2"; shift 2 ;;
    --gpus-per-node) need_value "$1" $# "${2:-}"; GPUS_PER_NODE="$2"; shift 2 ;;
    --per) need_value "$1" $# "${2:-}"; PER="$2"; shift 2 ;;
    --cpus-per-task) need_value "$1" $# "${2:-}"; CPUS="$2"; shift 2 ;;
    --time) need_value "$1" $# "${2:-}"; TIME="$2"; shift 2 ;;
    --partition) need_value "$1" $# "${2:-}"; PARTITION="$2"; shift 2 ;;
    --account) need_value "$1" $# "${2:-}"; ACCOUNT="$2"; shift 2 ;;
    --qos) need_value "$1" $# "${2:-}"; QOS="$2"; shift 2 ;;
    --constraint) need_value "$1" $# "${2:-}"; CONSTRAINT="$2"; shift 2 ;;
    --job-name) need_value "$1" $# "${2:-}"; JOB_NAME="$2"; shift 2 ;;
    --signal-lead) need_value "$1" $# "${2:-}"; SIGNAL_LEAD="$2"; shift 2 ;;
    --max-restarts) need_value "$1" $# "${2:-}"; MAX_RESTARTS="$2"; shift 2 ;;
    --sbatch-arg=*) SBATCH_EXTRA+=("${1#*=}"); shift ;;
    --sbatch-arg) need_value "$1" $#; SBATCH_EXTRA+=("$2"); shift 2 ;;
    --python) need_value "$1" $# "${2:-}"; PYTHON="$2"; shift 2 ;;
    --mem-fraction) need_value "$1" $# "${2:-}"; MEM_FRACTION="$2"; shift 2 ;;
    --xla-flags) need_value "$1" $#; EXTRA_XLA="$2"; shift 2 ;;
    --coordinator-port) need_value "$1" $# "${2:-}"; PORT="$2"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done
require --config "${CONFIG}"
require --workdir "${WORKDIR}"
check_config "${CONFIG}"
positive_int() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}
positive_int --nodes "${NODES}"
positive_int --gpus-per-node "${GPUS_PER_NODE}"
positive_int --signal-lead "${SIGNAL_LEAD}"
[[ "${MAX_RESTARTS}" =~ ^[0-9]+$ ]] || die "--max-restarts must be an integer >= 0, got '${MAX_RESTARTS}'"
[[ -z "${PORT}" ]] || positive_int --coordinator-port "${PORT}"
case "${PER}" in
  gpu) TASKS_PER_NODE="${GPUS_PER_NODE}"; CPUS="${CPUS:-8}" ;;
  node) TASKS_PER_NODE=1; CPUS="${CPUS:-$((8 * GPUS_PER_NODE))}" ;;
  *) die "--per must be 'gpu' or 'node', got '${PER}'" ;;
esac
positive_int --cpus-per-task "${CPUS}"
# Every node must see the same workdir (orbax writes one checkpoint from all processes, and a
# requeued job may land on other nodes), so node-local paths are refused.
[[ "${WORKDIR}" == /* ]] || die "--workdir must be an absolute path on storage every node sees, got '${WORKDIR}'"
case "${WORKDIR}" in
  /tmp|/tmp/*|/var/tmp|/var/tmp/*|/dev/shm|/dev/shm/*)
    die "--workdir ${WORKDIR} is node-local; use storage every node sees" ;;
esac
# The job runs in the repository root: keep a config given relative to the current directory
# valid there.
if [[ "${CONFIG}" != /* && ! -f "${REPO_ROOT}/${CONFIG}" ]]; then
  CONFIG="$(cd "$(dirname "${CONFIG}")" && pwd)/$(basename "${CONFIG}")"
fi
JOB_NAME="${JOB_NAME:-jaxssl-$(basename "${CONFIG}" .py)}"

cd "${REPO_ROOT}"
if [[ "${INSTALL}" == 1 ]]; then
  run "${PYTHON}" -m pip install -e ".[train]" "jax[cuda12]>=0.6.2,<0.11"
fi
run mkdir -p "${WORKDIR}"

SBATCH=(sbatch --job-name "${JOB_NAME}" --nodes "${NODES}" --ntasks-per-node "${TASKS_PER_NODE}"
  --gpus-per-node "${GPUS_PER_NODE}" --cpus-per-task "${CPUS}" --time "${TIME}"
  # SIGTERM to the trainers (not B:, the batch shell) SIGNAL_LEAD s before the limit.
  "--signal=TERM@${SIGNAL_LEAD}" --requeue --open-mode=append
  --output "${WORKDIR}/slurm-%j.out" --chdir "${REPO_ROOT}")
[[ -z "${PARTITION}" ]] || SBATCH+=(--partition "${PARTITION}")
[[ -z "${ACCOUNT}" ]] || SBATCH+=(--account "${ACCOUNT}")
[[ -z "${QOS}" ]] || SBATCH+=(--qos "${QOS}")
[[ -z "${CONSTRAINT}" ]] || SBATCH+=(--constraint "${CONSTRAINT}")
SBATCH+=(${SBATCH_EXTRA[@]+"${SBATCH_EXTRA[@]}"})

XLA="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true ${EXTRA_XLA}"
JOB_ARGS=(--max-restarts "${MAX_RESTARTS}" --cpus-per-task "${CPUS}"
  --resubmit "$(quote_words launch/slurm.sh ${RESUBMIT_ARGS[@]+"${RESUBMIT_ARGS[@]}"})"
  --env JAXSSL_DISTRIBUTED=auto
  --env "XLA_FLAGS=$(trim "${XLA}")"
  --env "XLA_PYTHON_CLIENT_MEM_FRACTION=${MEM_FRACTION}")
if [[ "${PER}" == node ]]; then
  # JAX's SLURM detection gives each process only GPU $SLURM_LOCALID (0 with one task per
  # node); list all of them instead.
  JOB_ARGS+=(--env "JAX_LOCAL_DEVICE_IDS=$(seq -s, 0 $((GPUS_PER_NODE - 1)))")
fi
[[ -z "${PORT}" ]] || JOB_ARGS+=(--env "JAX_COORDINATOR_PORT=${PORT}")
JOB_ARGS+=(-- "${PYTHON}" -m jaxssl.train --config "${CONFIG}" --workdir "${WORKDIR}"
  ${OVERRIDES[@]+"${OVERRIDES[@]}"})

run "${SBATCH[@]}" launch/slurm_job.sh "${JOB_ARGS[@]}"
if [[ "${DRY_RUN}" == 1 ]]; then
  echo "# then, in the job, launch/slurm_job.sh runs (on ${NODES} x ${TASKS_PER_NODE} task(s)):"
  bash launch/slurm_job.sh --dry-run "${JOB_ARGS[@]}" | grep -v '^jaxssl job '
fi
