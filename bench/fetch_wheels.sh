#!/usr/bin/env bash
# Downloads the pure-Python wheels that bench/gpu_suite.sh installs on a GPU machine without internet:
# ml_collections (tgo_train.bench) and spikingjelly + loguru + scienceplots (the PyTorch peer benchmark).
#   bench/fetch_wheels.sh [DEST]   (default .whl, which git ignores)
set -euo pipefail
dest=${1:-.whl}
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d "$dest" \
  ml_collections==1.1.0 spikingjelly==2.0.0 loguru==0.7.3 scienceplots==2.2.2
