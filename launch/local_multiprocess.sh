#!/usr/bin/env bash
# N JAX processes on this machine (CPU), each with D fake devices: the multi-host code path without a cluster.
#   launch/local_multiprocess.sh N D -- --config=configs/evi_mae.py:demo --workdir=runs/mp
# Every process runs the same command; JAX's coordination service (on process 0) connects them.
set -euo pipefail
if [[ $# -lt 3 || "$3" != "--" ]]; then
  echo "usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS -- <imujax.main flags>" >&2
  exit 2
fi
num_processes=$1; devices=$2; shift 3
port=${IMUJAX_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
pids=()
for ((i = 0; i < num_processes; i++)); do
  IMUJAX_COORDINATOR="127.0.0.1:${port}" IMUJAX_NUM_PROCESSES="${num_processes}" IMUJAX_PROCESS_ID="${i}" \
  XLA_FLAGS="--xla_force_host_platform_device_count=${devices}" JAX_PLATFORMS=cpu \
    python3 -m imujax.main "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "${pid}" || status=$?; done
exit "${status}"
