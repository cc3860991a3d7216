#!/usr/bin/env bash
# Prepares what benchmarks/gpu_run.sh and gpu_train_artifacts.sh need on a GPU machine that has
# JAX with CUDA but no network: run this on a machine with network, from the repository root,
# then copy the repository (with .whl/ and .gpu_data/) to the GPU machine.
#   .whl/       wheels of metalearn's dependencies other than JAX itself (pure Python + numpy ext.)
#   .gpu_data/  the bundled datasets prepared as TFDS ArrayRecord files
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl .gpu_data
python3 -m pip download -q -d .whl flax optax orbax-checkpoint chex etils tensorflow-datasets \
  array-record ml_collections tqdm tensorboardX safetensors
python3 - <<'PY'
from metalearn import data
for name in data.BUNDLED:
  print("prepared", data.prepare(name, data_dir=".gpu_data"))
PY
