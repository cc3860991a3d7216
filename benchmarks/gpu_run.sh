#!/usr/bin/env bash
# The GPU check, run on a lent H100/H200 through the device tool (one prepared call):
#   - step-cost table (benchmarks/step_cost.py), meta-training efficiency and inner steps/s
#     (benchmarks/meta_efficiency.py) for the default and the pretrained_default configs;
#   - a short HyperparamNet meta-training (experiments/pretrained_hyperparam_net.py, bigger
#     population) whose meta-parameters come back in $OUT.
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
timeout -s TERM 170 python3 -m metalearn.cli meta-train --config experiments/pretrained_hyperparam_net.py \
  --workdir /tmp/hpn --config.progress=False --config.population_per_task=32 --config.checkpoint_every=100 2>&1 | tail -3
cp /tmp/hpn/metrics.jsonl "$OUT/hpn_metrics.jsonl" 2>/dev/null
python3 - "$OUT" <<'PY'
import sys
from metalearn.artifacts import from_workdir as load_meta_params
from metalearn.optimizers.serialization import save_rule
rule, theta, info = load_meta_params("/tmp/hpn")
save_rule(sys.argv[1] + "/hyperparam_net_gpu.safetensors", rule, theta, outer_step=int(info["outer_step"]))
print("exported step", info["outer_step"])
PY
