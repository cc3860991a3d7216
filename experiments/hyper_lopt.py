"""Recipe of `hyper_lopt`: HyperLOpt (VeLO-style hypernetwork) meta-trained like `scaled_lopt`.

Same task types (``TRAIN``, imported), horizons 100-2000, truncations of 20, PES and post-hoc
meta-validation (``VALIDATION``) as experiments/scaled_lopt.py; only the rule differs, and the
checkpoints are kept more often because the run is time-boxed to 25 minutes on the shared 2-core
CPU.

    timeout -s TERM 1500 metalearn meta-train --config experiments/hyper_lopt.py --workdir runs/hyper_lopt
    python experiments/select_checkpoint.py runs/hyper_lopt runs/hyper_lopt/selected.safetensors \\
        --config experiments/hyper_lopt.py

See docs/artifacts.md for the compute used and the evaluation.
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "scaled_lopt_recipe", os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaled_lopt.py"))
_scaled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_scaled)

TRAIN = _scaled.TRAIN
VALIDATION = _scaled.VALIDATION
VALIDATION_HORIZONS = _scaled.VALIDATION_HORIZONS
VALIDATION_EVERY = 300


def get_config():
  c = _scaled.get_config()
  c.name = "hyper_lopt"
  c.rule = "hyper_lopt"
  c.checkpoint_every = 150
  c.keep_checkpoints = 40
  return c
