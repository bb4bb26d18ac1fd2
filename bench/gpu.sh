#!/usr/bin/env bash
# The benchmark suite for JAX, PyTorch and TensorFlow on an NVIDIA GPU machine
# with no network, in under 10 minutes; JSON rows, their report (README.md +
# README.png) and gpu.txt go to OUT_DIR. A backend whose framework is not
# installed there is skipped with a message.
#
#   bench/gpu.sh OUT_DIR [PHOTOS_DIR]            on the GPU machine (wheels from .whl/)
#   bench/gpu.sh --wheels [DIR [PYTHON]]         here: the folder to carry (default .whl,
#                                                for the GPU machine's Python 3.12)
#   bench/gpu.sh --dry-run OUT_DIR [PHOTOS_DIR]  any CPU: the same paths at tiny sizes,
#                                                wheels for this Python, no nvidia-smi
#
# What the GPU machine lacks and gets carried (3 wheels, about 2.9 MB): keras
# (this checkout's version), its dependencies namex and optree. Its image has
# PyTorch, JAX, numpy, pillow, matplotlib, filelock, pytest and pytest-benchmark.
# What does not fit the 64 MiB that travels: TensorFlow (its GPU wheel is
# ~600 MB, tensorflow-cpu ~250 MB), so its run is skipped there.
# PHOTOS_DIR (class-per-folder photos) feeds the input-pipeline and accuracy
# benchmarks; without it they are deselected, since nothing can be downloaded.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

build_wheels() {  # DIR PYTHON_VERSION: keras, namex, optree as pip download finds them
  local keras_version
  keras_version=$("$python" -c "import importlib.metadata as m; print(m.version('keras'))") || return 1
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version "$2" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$1" "keras==$keras_version" namex optree || return 1
  du -sh "$1"
}

if [ "${1:-}" = "--wheels" ]; then
  build_wheels "${2:-.whl}" "${3:-3.12}"
  exit
fi
dry_run=
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
out=${1:?usage: bench/gpu.sh [--dry-run] OUT_DIR [PHOTOS_DIR] | bench/gpu.sh --wheels [DIR [PYTHON]]}
photos=${2:-}
mkdir -p "$out"

wheels=.whl site=/tmp/flowerkit-site
if [ -n "$dry_run" ]; then  # wheels for this Python, built as for the GPU machine
  wheels=$out/wheels site=$out/site
  build_wheels "$wheels" "$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || exit 1
fi
if compgen -G "$wheels/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheels"/*.whl || exit 1
  export PYTHONPATH=$site:$PWD
else
  export PYTHONPATH=$PWD
fi

if [ -n "$dry_run" ]; then
  echo "dry run: no GPU queried" | tee "$out/gpu.txt"
  export FLOWERKIT_BENCH_SIZE=tiny
  size=tiny seconds=${FLOWERKIT_DRY_RUN_SECONDS:-480}  # generous: CI runs it beside two other suites
else
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  # Full-size throughput (precision "auto": mixed bfloat16 on Ampere and newer);
  # a short frozen accuracy run (3 epochs) keeps the three backends well inside
  # the 10-minute budget on one GPU.
  export FLOWERKIT_BENCH_SIZE=full FLOWERKIT_BENCH_EPOCHS=${FLOWERKIT_BENCH_EPOCHS:-3}
  size=full seconds=190
fi
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
  if ! "$python" -c "import $backend" 2>/dev/null; then
    echo "skipped: $backend is not installed on this machine" | tee "$out/$backend-skipped.txt"
    continue
  fi
  KERAS_BACKEND=$backend timeout "$seconds" "$python" -m pytest bench --benchmark-only -q \
    -p no:cacheprovider --benchmark-json="$out/$backend-gpu-$size.json" "${select[@]}" \
    || status=1
done
# PyTorch data-parallel under torchrun on 1 and on every GPU (two gloo CPU
# processes in a dry run), with the scaling efficiency (bench/torch_scaling.py).
if "$python" -c "import torch" 2>/dev/null; then
  processes=2
  [ -z "$dry_run" ] && processes=$(nvidia-smi -L | wc -l)
  if [ "$processes" -gt 1 ]; then
    echo "== torch data-parallel on 1 and $processes processes"
    KERAS_BACKEND=torch timeout "$seconds" "$python" -m bench.torch_scaling \
      "$out/torch-scaling-$size.json" "$processes" "${photos:--}" ${dry_run:+--dry-run} || status=1
  fi
fi
if compgen -G "$out/*-gpu-$size.json" >/dev/null; then
  "$python" -m bench.report "$out"/*-gpu-$size.json --markdown "$out/README.md" || status=1
fi
exit $status
