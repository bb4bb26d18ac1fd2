#!/usr/bin/env bash
# The benchmark suite for JAX, PyTorch and TensorFlow on an NVIDIA GPU machine
# with no network, in under 10 minutes; JSON rows go to OUT_DIR. A backend
# whose framework is not installed there is skipped with a message (a
# TensorFlow GPU wheel is too large to carry to a machine without one).
#
#   bench/gpu.sh OUT_DIR [PHOTOS_DIR]
#
# Wheels for what the machine lacks (keras at least; grain, pytest-benchmark,
# flowerkit's own dependencies) are installed from .whl/ when present, e.g.
# made here with:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 -d .whl keras==3.15.1 pytest-benchmark ...
# PHOTOS_DIR (class-per-folder photos) feeds the input-pipeline and accuracy
# benchmarks; without it they are deselected, since nothing can be downloaded.
set -uo pipefail
out=${1:?usage: bench/gpu.sh OUT_DIR [PHOTOS_DIR]}
photos=${2:-}
mkdir -p "$out"
cd "$(dirname "$0")/.."

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/flowerkit-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/flowerkit-site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

# Full-size throughput (precision "auto": mixed bfloat16 on Ampere and newer);
# a short frozen accuracy run (3 epochs) keeps the three backends well inside
# the 10-minute budget on one GPU.
export FLOWERKIT_BENCH_SIZE=full FLOWERKIT_BENCH_EPOCHS=${FLOWERKIT_BENCH_EPOCHS:-3}
export FLOWERKIT_BENCH_ACCURACY_PRESET=${FLOWERKIT_BENCH_ACCURACY_PRESET:-mobilenet_v2_035}
select=()
if [ -n "$photos" ]; then
  export FLOWERKIT_BENCH_DATA=$photos
else
  select=(-k "not input_pipeline and not final_accuracy")
fi
status=0
for backend in jax torch tensorflow; do
  echo "== $backend"
  if ! python3 -c "import $backend" 2>/dev/null; then
    echo "skipped: $backend is not installed on this machine" | tee "$out/$backend-skipped.txt"
    continue
  fi
  KERAS_BACKEND=$backend timeout 190 python3 -m pytest bench --benchmark-only -q \
    -p no:cacheprovider --benchmark-json="$out/$backend-gpu-full.json" "${select[@]}" \
    || status=1
done
exit $status
