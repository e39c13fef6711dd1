#!/usr/bin/env bash
# Pretrain on every GPU of one host: python -m jaxssl.train with GPU-friendly XLA settings.
set -euo pipefail
# shellcheck source=launch/_lib.sh
source "$(dirname "$0")/_lib.sh"

usage() {
  cat <<'USAGE'
Usage: launch/gpu.sh --config configs/FILE.py --workdir DIR [options] [--config.x=y ...]

Runs the jaxssl trainer on all GPUs of this host (one process; the batch is sharded over the
GPUs by the trainer's device mesh).

Required:
  --config PATH        config file (e.g. configs/dino_vits16_imagenet.py)
  --workdir DIR        checkpoints, metrics and plots go here (re-running resumes)
Options:
  --install            first `pip install -e ".[train]" "jax[cuda12]"` (CUDA 12 wheels from PyPI)
  --gpus LIST          restrict to these GPUs, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES)
  --mem-fraction F     share of each GPU's memory JAX preallocates (default 0.9)
  --xla-flags FLAGS    extra XLA_FLAGS, appended to the defaults below
  --python BIN         Python interpreter (default: python3)
  --max-restarts N     re-run the trainer up to N times when it exits 75 (preempted,
                       checkpoint saved; it resumes), default 3; 0 disables
  --dry-run            print every command without running it
  -h, --help           this help
Any --config.FIELD=VALUE argument is passed to the trainer as an override. Exit statuses are
the trainer's (jaxssl/exit_codes.py); 75 means preempted with a checkpoint saved.

Default XLA_FLAGS: --xla_gpu_enable_latency_hiding_scheduler=true (overlaps the gradient
all-reduce with the backward pass on multi-GPU hosts).
USAGE
}

CONFIG="" WORKDIR="" INSTALL=0 GPUS="" MEM_FRACTION="0.9" EXTRA_XLA="" PYTHON="python3"
OVERRIDES=()
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
    --gpus) need_value "$1" $# "${2:-}"; GPUS="$2"; shift 2 ;;
    --mem-fraction) need_value "$1" $# "${2:-}"; MEM_FRACTION="$2"; shift 2 ;;
    --xla-flags) need_value "$1" $#; EXTRA_XLA="$2"; shift 2 ;;
    --python) need_value "$1" $# "${2:-}"; PYTHON="$2"; shift 2 ;;
    --max-restarts) need_value "$1" $# "${2:-}"; MAX_RESTARTS="$2"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done
require --config "${CONFIG}"
require --workdir "${WORKDIR}"
check_config "${CONFIG}"
check_max_restarts "${MAX_RESTARTS}"
if [[ -n "${GPUS}" && ! "${GPUS}" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  die "--gpus must be a comma-separated list of GPU indices, got '${GPUS}'"
fi

cd "${REPO_ROOT}"
if [[ "${INSTALL}" == 1 ]]; then
  run "${PYTHON}" -m pip install -e ".[train]" "jax[cuda12]>=0.6.2,<0.11"
fi
XLA="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true ${EXTRA_XLA}"
ENV_VARS=(
  "XLA_FLAGS=$(trim "${XLA}")"
  "XLA_PYTHON_CLIENT_MEM_FRACTION=${MEM_FRACTION}"
)
if [[ -n "${GPUS}" ]]; then
  ENV_VARS+=("CUDA_VISIBLE_DEVICES=${GPUS}")
fi
run_trainer env "${ENV_VARS[@]}" "${PYTHON}" -m jaxssl.train --config "${CONFIG}" \
  --workdir "${WORKDIR}" ${OVERRIDES[@]+"${OVERRIDES[@]}"}
