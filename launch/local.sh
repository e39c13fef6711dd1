#!/usr/bin/env bash
# Pretrain on this machine's CPU: python -m jaxssl.train with JAX_PLATFORMS=cpu.
set -euo pipefail
# shellcheck source=launch/_lib.sh
source "$(dirname "$0")/_lib.sh"

usage() {
  cat <<'USAGE'
Usage: launch/local.sh --config configs/FILE.py --workdir DIR [options] [--config.x=y ...]

Runs the jaxssl trainer on the CPU of this machine.

Required:
  --config PATH        config file (e.g. configs/quickstart.py)
  --workdir DIR        checkpoints, metrics and plots go here (re-running resumes)
Options:
  --devices N          split the CPU into N XLA devices (exercises the sharded code path)
  --install            first run `pip install -e ".[train]"` in this checkout
  --python BIN         Python interpreter (default: python3)
  --max-restarts N     re-run the trainer up to N times when it exits 75 (preempted,
                       checkpoint saved; it resumes), default 3; 0 disables
  --dry-run            print every command without running it
  -h, --help           this help
Any --config.FIELD=VALUE argument is passed to the trainer as an override. Exit statuses are
the trainer's (jaxssl/exit_codes.py); 75 means preempted with a checkpoint saved.
USAGE
}

CONFIG="" WORKDIR="" DEVICES="" INSTALL=0 PYTHON="python3"
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
    --devices) need_value "$1" $# "${2:-}"; DEVICES="$2"; shift 2 ;;
    --python) need_value "$1" $# "${2:-}"; PYTHON="$2"; shift 2 ;;
    --max-restarts) need_value "$1" $# "${2:-}"; MAX_RESTARTS="$2"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done
require --config "${CONFIG}"
require --workdir "${WORKDIR}"
check_config "${CONFIG}"
check_max_restarts "${MAX_RESTARTS}"
if [[ -n "${DEVICES}" && ! "${DEVICES}" =~ ^[1-9][0-9]*$ ]]; then
  die "--devices must be a positive integer, got '${DEVICES}'"
fi

cd "${REPO_ROOT}"
if [[ "${INSTALL}" == 1 ]]; then
  run "${PYTHON}" -m pip install -e ".[train]"
fi
ENV_VARS=(JAX_PLATFORMS=cpu)
if [[ -n "${DEVICES}" ]]; then
  ENV_VARS+=("XLA_FLAGS=$(trim "${XLA_FLAGS:-} --xla_force_host_platform_device_count=${DEVICES}")")
fi
run_trainer env "${ENV_VARS[@]}" "${PYTHON}" -m jaxssl.train --config "${CONFIG}" \
  --workdir "${WORKDIR}" ${OVERRIDES[@]+"${OVERRIDES[@]}"}
