#!/usr/bin/env bash
# Pretrain on a Cloud TPU VM or pod slice: create (or reuse) the TPU, copy this checkout to every
# worker, install jaxssl with jax[tpu], and run the trainer on all workers at once. Each worker
# runs one process; JAXSSL_DISTRIBUTED=auto makes the trainer call jax.distributed.initialize(),
# which discovers the slice topology from the TPU metadata.
set -euo pipefail
# shellcheck source=launch/_lib.sh
source "$(dirname "$0")/_lib.sh"

usage() {
  cat <<'USAGE'
Usage: launch/tpu_pod.sh --config configs/FILE.py --workdir DIR --tpu NAME --zone ZONE
                         [options] [--config.x=y ...]

Required:
  --config PATH          config file, relative to the repository root
  --workdir DIR          gs://BUCKET/PATH (recommended: every worker sees the same checkpoints;
                         mounted with gcsfuse at /tmp/jaxssl-gcs/BUCKET on each worker) or a
                         path on the workers' own disks (single-host TPU VMs only)
  --tpu NAME             TPU VM (or queued resource) name; reused when it exists
  --zone ZONE            e.g. us-central2-b
Options:
  --accelerator-type T   slice type when creating, e.g. v4-32 (default: v4-8)
  --project P            GCP project (default: gcloud's configured project)
  --version V            TPU software version when creating (default: tpu-ubuntu2204-base)
  --queued               create through a queued resource and wait until it is ACTIVE
  --spot                 request spot capacity when creating
  --remote-dir DIR       code directory on the workers (default: jaxssl, under $HOME)
  --skip-install         do not reinstall (code is still copied)
  --detach               start training under nohup and return; log in ~/jaxssl-train.log
                         (no re-run on exit 75 then)
  --max-restarts N       re-run the training command on all workers up to N times when it
                         exits 75 (preempted, checkpoint saved; it resumes), default 3
  --dry-run              print every command without running it (the TPU is not looked up,
                         so the create command is shown)
  -h, --help             this help
Any --config.FIELD=VALUE argument is passed to the trainer as an override.

Example:
  launch/tpu_pod.sh --config configs/dino_vits16_imagenet.py --workdir gs://BUCKET/dino_vits16 \
    --tpu dino-v4-64 --zone us-central2-b --accelerator-type v4-64 --queued \
    --config.train.batch_size=1024
USAGE
}

CONFIG="" WORKDIR="" TPU="" ZONE="" ACCEL="v4-8" PROJECT="" VERSION="tpu-ubuntu2204-base"
QUEUED=0 SPOT=0 REMOTE_DIR="jaxssl" SKIP_INSTALL=0 DETACH=0
OVERRIDES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --config) need_value "$1" $# "${2:-}"; CONFIG="$2"; shift 2 ;;
    --config=*) CONFIG="${1#*=}"; shift ;;
    --config.*=*) OVERRIDES+=("$1"); shift ;;
    --workdir) need_value "$1" $# "${2:-}"; WORKDIR="$2"; shift 2 ;;
    --workdir=*) WORKDIR="${1#*=}"; shift ;;
    --tpu) need_value "$1" $# "${2:-}"; TPU="$2"; shift 2 ;;
    --zone) need_value "$1" $# "${2:-}"; ZONE="$2"; shift 2 ;;
    --accelerator-type) need_value "$1" $# "${2:-}"; ACCEL="$2"; shift 2 ;;
    --project) need_value "$1" $# "${2:-}"; PROJECT="$2"; shift 2 ;;
    --version) need_value "$1" $# "${2:-}"; VERSION="$2"; shift 2 ;;
    --remote-dir) need_value "$1" $# "${2:-}"; REMOTE_DIR="$2"; shift 2 ;;
    --queued) QUEUED=1; shift ;;
    --spot) SPOT=1; shift ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --detach) DETACH=1; shift ;;
    --max-restarts) need_value "$1" $# "${2:-}"; MAX_RESTARTS="$2"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done
require --config "${CONFIG}"
require --workdir "${WORKDIR}"
require --tpu "${TPU}"
require --zone "${ZONE}"
check_config "${CONFIG}"
check_max_restarts "${MAX_RESTARTS}"
if [[ "${CONFIG}" == /* ]]; then  # the workers see the checkout, so the path must be inside it
  [[ "${CONFIG}" == "${REPO_ROOT}/"* ]] || die "--config must be inside ${REPO_ROOT}: ${CONFIG}"
  CONFIG="${CONFIG#"${REPO_ROOT}/"}"
fi
if [[ ! "${ACCEL}" =~ ^v[0-9]+[a-z]*-[0-9]+$ ]]; then
  die "--accelerator-type must look like v4-32 or v5litepod-16, got '${ACCEL}'"
fi

GCLOUD_FLAGS=(--zone "${ZONE}")
if [[ -n "${PROJECT}" ]]; then
  GCLOUD_FLAGS+=(--project "${PROJECT}")
fi
CREATE_FLAGS=(--accelerator-type "${ACCEL}")
if [[ "${SPOT}" == 1 ]]; then
  CREATE_FLAGS+=(--spot)
fi

# 1. Create the TPU unless it already exists (in a dry run, show the create commands).
tpu_exists() {
  [[ "${DRY_RUN}" == 0 ]] && gcloud compute tpus tpu-vm describe "${TPU}" "${GCLOUD_FLAGS[@]}" \
    --format='value(state)' >/dev/null 2>&1
}
if tpu_exists; then
  echo "reusing TPU VM ${TPU}"
elif [[ "${QUEUED}" == 1 ]]; then
  run gcloud compute tpus queued-resources create "${TPU}" --node-id "${TPU}" \
    --runtime-version "${VERSION}" "${CREATE_FLAGS[@]}" "${GCLOUD_FLAGS[@]}"
  # A queued resource can wait hours for capacity; poll until the node is provisioned.
  if [[ "${DRY_RUN}" == 0 ]]; then
    until [[ "$(gcloud compute tpus queued-resources describe "${TPU}" "${GCLOUD_FLAGS[@]}" \
      --format='value(state.state)')" == "ACTIVE" ]]; do
      echo "waiting for queued resource ${TPU} to become ACTIVE"
      sleep 60
    done
  else
    echo "# then poll: gcloud compute tpus queued-resources describe ${TPU} until ACTIVE"
  fi
else
  run gcloud compute tpus tpu-vm create "${TPU}" --version "${VERSION}" \
    "${CREATE_FLAGS[@]}" "${GCLOUD_FLAGS[@]}"
fi

# 2. Copy this checkout (without virtualenvs, git history or local workdirs) to every worker.
ARCHIVE="${TMPDIR:-/tmp}/jaxssl-${TPU}.tar.gz"
run tar -czf "${ARCHIVE}" -C "${REPO_ROOT}" --exclude=.git --exclude=.venv \
  --exclude=workdirs --exclude='*.pyc' .
run gcloud compute tpus tpu-vm scp "${ARCHIVE}" "${TPU}:jaxssl.tar.gz" --worker=all \
  "${GCLOUD_FLAGS[@]}"
on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "${TPU}" --worker=all "${GCLOUD_FLAGS[@]}" \
    --command "$1"
}
REMOTE_Q="$(printf '%q' "${REMOTE_DIR}")"
on_all_workers "rm -rf ${REMOTE_Q} && mkdir -p ${REMOTE_Q} && tar -xzf jaxssl.tar.gz -C ${REMOTE_Q}"

# 3. Install jaxssl and the TPU build of jax (libtpu comes from PyPI with jax[tpu]).
if [[ "${SKIP_INSTALL}" == 0 ]]; then
  on_all_workers "cd ${REMOTE_Q} && python3 -m pip install -q -U pip && \
python3 -m pip install -q -e '.[train]' 'jax[tpu]>=0.6.2,<0.11'"
fi

# 4. A gs:// workdir is mounted with gcsfuse: the trainer and orbax write through ordinary file
#    paths, and every worker must see the same checkpoint directory.
RUN_WORKDIR="${WORKDIR}"
if [[ "${WORKDIR}" == gs://* ]]; then
  BUCKET_PATH="${WORKDIR#gs://}"
  BUCKET="${BUCKET_PATH%%/*}"
  [[ -n "${BUCKET}" ]] || die "--workdir gs:// URL has no bucket: '${WORKDIR}'"
  MOUNT="/tmp/jaxssl-gcs/${BUCKET}"
  RUN_WORKDIR="/tmp/jaxssl-gcs/${BUCKET_PATH}"
  on_all_workers "command -v gcsfuse >/dev/null || { echo 'gcsfuse is missing on the TPU VM; \
install it (see the Cloud Storage FUSE docs) or pass a local --workdir' >&2; exit 1; }; \
mkdir -p ${MOUNT} && { mountpoint -q ${MOUNT} || gcsfuse --implicit-dirs ${BUCKET} ${MOUNT}; }"
fi

# 5. Train on every worker; the log stays in ~/jaxssl-train.log on each worker. A run that exits
#    75 (SIGTERM/SIGINT on the workers, e.g. a maintenance event: checkpoint saved) is started
#    again on all workers and resumes; this relies on gcloud passing the workers' exit status on.
TRAIN_CMD="$(quote_words python3 -m jaxssl.train --config "${CONFIG}" --workdir "${RUN_WORKDIR}" \
  ${OVERRIDES[@]+"${OVERRIDES[@]}"})"
if [[ "${DETACH}" == 1 ]]; then
  on_all_workers "cd ${REMOTE_Q} && JAXSSL_DISTRIBUTED=auto nohup ${TRAIN_CMD} \
> ~/jaxssl-train.log 2>&1 &"
else
  run_trainer gcloud compute tpus tpu-vm ssh "${TPU}" --worker=all "${GCLOUD_FLAGS[@]}" \
    --command "set -o pipefail; cd ${REMOTE_Q} && JAXSSL_DISTRIBUTED=auto ${TRAIN_CMD} \
2>&1 | tee -a ~/jaxssl-train.log"
fi
