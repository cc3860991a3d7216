#!/usr/bin/env bash
# The GPU check, run on a lent H100/H200 through the device tool (one prepared call):
#   - step-cost table (benchmarks/step_cost.py), meta-training efficiency and inner steps/s
#     (benchmarks/meta_efficiency.py) for the default and the pretrained_default configs;
#   - `tx.update` alone against AdamW (benchmarks/update_cost.py) for the shipped `default` on the
#     per-tensor and the grouped path (as_optax(grouped=True)) and the other rules.
# Wheels the GPU image lacks travel in .whl/, the prepared bundled datasets in .gpu_data/: make
# both with benchmarks/gpu_prepare.sh on a machine with network first.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD TFDS_DATA_DIR=$PWD/.gpu_data PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
timeout 150 python3 benchmarks/step_cost.py --rounds 7 --json "$OUT/step_cost_gpu.json" 2>&1 | grep -v Warning | tee "$OUT/step_cost_gpu.txt"
timeout 100 python3 benchmarks/meta_efficiency.py --rounds 3 --steps 10 --json "$OUT/meta_eff_default_gpu.json" 2>&1 | tail -4
timeout 110 python3 benchmarks/meta_efficiency.py --config experiments/pretrained_default.py \
  --rounds 3 --steps 10 --config.population_per_task=64 --json "$OUT/meta_eff_pretrained_cfg_gpu.json" 2>&1 | tail -4
timeout 170 python3 benchmarks/update_cost.py --rounds 5 --sets mlp,cnn,transformer,matrix \
  --rules default,default_grouped,mlp_lopt,hyperparam_net,hyper_lopt \
  --json "$OUT/update_cost_gpu.json" 2>&1 | grep -v Warning | tee "$OUT/update_cost_gpu.txt"
