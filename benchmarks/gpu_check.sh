#!/usr/bin/env bash
# One-GPU check: full-size EVI-MAE train step in bf16 at batch 16 and at the largest batch that fits (samples/s, MFU
# against the card's bf16 peak, peak memory), then Audio-MAE and PRIMUS, then the original upstream EVI-MAE step under
# torch AMP (bf16 autocast) on the same card, for the ratio. Target: one H100/H200, no network, a preinstalled CUDA
# JAX 0.11.x with flax/optax/orbax and torch 2.11 with timm. Budget: under 8 minutes.
#
#   benchmarks/gpu_check.sh --prepare   # here, with network: wheels imujax needs beyond that stack + the upstream
#                                       # harness and EVI-MAE sources, into benchmarks/.gpu_check/ (< 64 MiB, ignored)
#   benchmarks/gpu_check.sh             # on the GPU machine (carry benchmarks/.gpu_check); results in $OUT or ./
#   benchmarks/gpu_check.sh --dry-run   # small shapes on whatever device JAX has (CPU in the test), no upstream step
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=benchmarks/.gpu_check
PY=${PYTHON:-python3}
MODE=${1:-run}

if [[ $MODE == --prepare ]]; then
  # Wheels for what the target stack lacks (the imports of imujax.train and the systems), for CPython 3.10-3.12.
  rm -rf "$KIT" && mkdir -p "$KIT/wheels"
  PKGS="grain==0.2.18 tensorflow-datasets==4.9.10 tensorflow-metadata array_record==0.8.6 ml_collections==1.1.0
        einops==0.8.1 immutabledict promise toml simple_parsing tensorboardX cloudpickle dm-tree"
  for v in 3.10 3.11 3.12; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$v" --platform manylinux2014_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
      -d "$KIT/wheels" $PKGS
  done
  # The upstream harness (its README: bench_torch.py + shims) and IMU-Video-MAE @ 78e7666 src/models.
  HARNESS=${BENCH_UPSTREAM:-../shared/bench_upstream}
  mkdir -p "$KIT/bench_upstream/src/mf-zhang+IMU-Video-MAE"
  cp -r "$HARNESS/bench_torch.py" "$HARNESS/shims" "$KIT/bench_upstream/"
  git --git-dir="${EVI_MAE_MIRROR:-/work/.mirror/mf-zhang+IMU-Video-MAE}" archive 78e7666 src/models \
    | tar -x -C "$KIT/bench_upstream/src/mf-zhang+IMU-Video-MAE"
  du -sh "$KIT"
  exit 0
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ $MODE == --dry-run ]]; then
  for s in evi_mae audio_mae primus; do "$PY" benchmarks/gpu_check.py jax --system "$s" --dry-run; done
  exit 0
fi

# Install (no network, no dependency resolution) only the wheels whose module the machine lacks.
if [[ -d $KIT/wheels ]]; then
  for pair in grain:grain tensorflow_datasets:tensorflow_datasets tensorflow_metadata:tensorflow_metadata \
              array_record:array_record ml_collections:ml_collections einops:einops immutabledict:immutabledict \
              promise:promise toml:toml simple_parsing:simple_parsing tensorboardX:tensorboardX \
              cloudpickle:cloudpickle tree:dm_tree; do
    mod=${pair%%:*}; dist=${pair##*:}
    "$PY" -c "import $mod" 2>/dev/null || \
      "$PY" -m pip install -q --no-deps --no-index --find-links "$KIT/wheels" --target "$KIT/site" "$dist"
  done
  export PYTHONPATH="$PYTHONPATH:$PWD/$KIT/site"
fi
RESULTS=${OUT:-.}/gpu_check.jsonl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "${OUT:-.}/gpu_check_card.txt" || true
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
for s in evi_mae audio_mae primus; do
  timeout 150 "$PY" benchmarks/gpu_check.py jax --system "$s" | tee -a "$RESULTS" || echo "{\"system\": \"$s\", \"error\": $?}"
done
timeout 90 "$PY" benchmarks/gpu_check.py torch_upstream --harness "$KIT/bench_upstream" --batch 16 | tee -a "$RESULTS" \
  || echo '{"system": "evi_mae upstream", "error": "failed or timed out"}'
