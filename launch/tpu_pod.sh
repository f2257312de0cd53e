#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: create it, install imujax on every worker, run, delete.
#   launch/tpu_pod.sh create NAME ZONE ACCELERATOR [VERSION]    e.g. create imujax-v5e us-west4-a v5litepod-64
#   launch/tpu_pod.sh setup  NAME ZONE                          copy this checkout to all workers and pip install it
#   launch/tpu_pod.sh run    NAME ZONE -- <imujax.main flags>  e.g. -- --config=configs/evi_mae.py --workdir=gs://b/r
#   launch/tpu_pod.sh delete NAME ZONE
# On TPU, jax.distributed.initialize() discovers the other workers itself; every worker runs the same command.
set -euo pipefail
action=${1:?action}; name=${2:?name}; zone=${3:?zone}
ssh_all() { gcloud compute tpus tpu-vm ssh "${name}" --zone="${zone}" --worker=all --command="$1"; }
case "${action}" in
  create)
    accelerator=${4:?accelerator type}; version=${5:-tpu-ubuntu2204-base}
    gcloud compute tpus tpu-vm create "${name}" --zone="${zone}" --accelerator-type="${accelerator}" \
      --version="${version}" ;;
  setup)
    tar czf /tmp/imujax.tgz --exclude=.git --exclude=runs --exclude=.venv .
    gcloud compute tpus tpu-vm scp /tmp/imujax.tgz "${name}":/tmp/ --zone="${zone}" --worker=all
    ssh_all "mkdir -p ~/imujax && tar xzf /tmp/imujax.tgz -C ~/imujax && cd ~/imujax && pip install -e . 'jax[tpu]'" ;;
  run)
    shift 3; [[ "${1:-}" == "--" ]] && shift
    ssh_all "cd ~/imujax && python3 -m imujax.main $(printf '%q ' "$@")" ;;
  delete)
    gcloud compute tpus tpu-vm delete "${name}" --zone="${zone}" --quiet ;;
  *) echo "unknown action ${action}; use create, setup, run or delete" >&2; exit 2 ;;
esac
