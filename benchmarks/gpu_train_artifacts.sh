#!/usr/bin/env bash
# Meta-trains both shipped rules on a lent GPU (one device-tool call), with bigger populations than
# the CPU recipes, under a wall-clock limit each; SIGTERM makes meta-train save and stop, and the
# latest meta-parameters are exported to $OUT as safetensors with their metrics.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD TFDS_DATA_DIR=$PWD/.gpu_data PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
train() {  # name config seconds extra-flags...
  local name=$1 cfg=$2 secs=$3; shift 3
  timeout -s TERM "$secs" python3 -m metalearn.cli meta-train --config "$cfg" --workdir "/tmp/$name" \
    --config.progress=False --config.checkpoint_every=250 --config.num_outer_steps=100000 "$@" 2>&1 | tail -2
  cp "/tmp/$name/metrics.jsonl" "$OUT/${name}_metrics.jsonl"
  python3 - "$name" "$OUT" <<'PY'
import sys
from metalearn.artifacts import from_workdir as load_meta_params
from metalearn.optimizers.serialization import save_rule
name, out = sys.argv[1:]
rule, theta, info = load_meta_params(f"/tmp/{name}")
save_rule(f"{out}/{name}.safetensors", rule, theta, outer_step=int(info["outer_step"]))
print(name, "exported step", info["outer_step"])
PY
}
train default_gpu experiments/pretrained_default.py 170 --config.population_per_task=64
train hpn_gpu experiments/pretrained_hyperparam_net.py 120 --config.population_per_task=32 --config.outer_lr=1e-3
