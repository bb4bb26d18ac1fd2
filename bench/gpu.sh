#!/usr/bin/env bash
# The benchmark suite for JAX and PyTorch on an NVIDIA GPU machine with no
# network, in under 10 minutes; JSON rows go to OUT_DIR.
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

# Full-size throughput; a short accuracy run (3 epochs) keeps both backends
# well inside the 10-minute budget on one GPU.
export FLOWERKIT_BENCH_SIZE=full FLOWERKIT_BENCH_EPOCHS=${FLOWERKIT_BENCH_EPOCHS:-3}
select=()
if [ -n "$photos" ]; then
  export FLOWERKIT_BENCH_DATA=$photos
else
  select=(-k "not input_pipeline and not final_accuracy")
fi
status=0
for backend in jax torch; do
  echo "== $backend"
  KERAS_BACKEND=$backend timeout 280 python3 -m pytest bench --benchmark-only -q \
    -p no:cacheprovider --benchmark-json="$out/$backend-gpu-float32-full.json" "${select[@]}" \
    || status=1
done
exit $status
