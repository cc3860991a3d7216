"""AdamW's learning rate and weight decay on a digits MLP, by TPE (9 trials in batches of 3).

    metalearn search --config experiments/search_adam_digits.py --workdir runs/search_adam
    metalearn search --config experiments/search_adam_digits.py --workdir runs/search_adam_grid \
        --sampler grid --trials 28     # the 7 x 4 grid it is measured against (docs/search.md)
"""
import numpy as np

TASK = {"kind": "image_mlp", "dataset": "digits", "hidden": (32,), "batch_size": 64}
GRID = {"learning_rate": [float(x) for x in np.geomspace(1e-3, 1.0, 7)],   # half decades
        "weight_decay": [float(x) for x in np.geomspace(1e-4, 1e-1, 4)]}


def get_config():
  return {
      "name": "adam_digits",
      "task": TASK,
      "optimizer": "adamw",
      "num_steps": 300,
      # Scored like the evaluation tunes its baselines: the final training loss (here the mean
      # over the last quarter of the run), over two seeds; the held-out loss of single runs near
      # the best learning rate is too jagged for a 1% comparison (docs/search.md).
      "metric": "train_loss",
      "seeds": (0, 1),
      "space": {"learning_rate": ("log", 1e-3, 1.0), "weight_decay": ("log", 1e-4, 1e-1)},
      "grid": GRID,              # used with --sampler grid
      "sampler": "tpe",
      "pruner": "median",
      "num_reports": 4,
      "trials": 9,
      "batch_size": 3,
  }
