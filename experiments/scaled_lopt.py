"""Recipe of `scaled_lopt`: ScaledLOpt meta-trained with PES on a mixed task distribution.

Meta-training task types (explicit, cheap on 2 CPU cores): image MLPs of several widths and
depths on digits (8x8), mnist5k_8 and mnist5k_14 (14x14), an MLP autoencoder on 8x8 images, a
one-layer character transformer, and linear regression. No CNN: a vmapped CNN population costs
about 70 inner steps/s on this CPU (an MLP of the same size: 5,000), so it would starve the rest. Horizons
100-2000 steps (log-uniform, random first cut), truncations of 20. The meta-objective is the
per-run log loss ratio (scale-free across tasks).

Meta-validation (``VALIDATION``, held-out families: activations, datasets and shapes none of the
training tasks has, and a CNN) is run after the run on every kept checkpoint by
``experiments/select_checkpoint.py``, which picks the checkpoint that ships.

    metalearn meta-train --config experiments/scaled_lopt.py --workdir runs/scaled_lopt

See docs/artifacts.md for the compute used and the evaluation.
"""
import ml_collections


def _mlp(dataset, hidden, act="relu", bs=32):
  return {"kind": "image_mlp", "dataset": dataset, "hidden": list(hidden), "activation": act,
          "batch_size": bs}


TRAIN = [
    _mlp("digits", (32,), "relu", 32),
    _mlp("mnist5k_8", (128, 128), "gelu", 64),
    _mlp("mnist5k_14", (96, 96), "relu", 32),
    _mlp("mnist5k_8", (24, 24, 24, 24), "relu", 32),
    {"kind": "autoencoder", "dataset": "mnist5k_8", "hidden": [32, 8], "activation": "relu",
     "batch_size": 32},
    {"kind": "char_lm", "dataset": "pychars", "d_model": 16, "num_layers": 1, "num_heads": 1,
     "seq_len": 16, "batch_size": 8},
    {"kind": "linreg", "dim": 16, "seed": 3, "batch_size": 16},
]

VALIDATION = [
    _mlp("mnist5k_14", (48, 48, 48), "elu", 64),
    {"kind": "cnn", "dataset": "mnist5k_8", "hidden": [6, 12, 24], "activation": "gelu",
     "batch_size": 32},
    {"kind": "autoencoder", "dataset": "digits", "hidden": [48], "activation": "tanh",
     "batch_size": 64},
    {"kind": "quadratic", "dim": 24, "seed": 5, "batch_size": 8},
]

# 3000 steps is past the longest meta-training horizon: a checkpoint must also hold up there.
VALIDATION_HORIZONS = (300, 3000)
VALIDATION_EVERY = 900   # score every third kept checkpoint (and the last one)


def get_config():
  return ml_collections.ConfigDict(dict(
      name="scaled_lopt",
      rule="scaled_lopt",
      task_specs=tuple(TRAIN),
      population_per_task=4,
      truncation_length=20,
      min_horizon=100,
      max_horizon=2000,
      estimator="pes",
      es_sigma=0.01,
      outer_lr=3e-3,
      num_outer_steps=100000,   # the run is time-boxed (timeout -s TERM); resumes if rerun
      checkpoint_every=300,
      keep_checkpoints=40,
      log_every=20,
      eval_every=0,             # validation is post hoc: experiments/select_checkpoint.py
      eval_horizon=300,
      eval_tasks=tuple(VALIDATION),
  ))
