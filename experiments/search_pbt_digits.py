"""PBT of AdamW's learning rate on a digits MLP: 16 members, 8 intervals of 100 steps.

    metalearn search --config experiments/search_pbt_digits.py --workdir runs/search_pbt

Members start at the 16 log-even learning rates a grid search would try (1e-4 .. 1e-1), so the
comparison with that grid at the same compute is direct (docs/search.md).
"""


def get_config():
  return {
      "name": "pbt_digits",
      "mode": "pbt",
      "task": {"kind": "image_mlp", "dataset": "digits", "hidden": (32,), "batch_size": 64},
      "optimizer": "adamw",
      "num_steps": 800,
      "space": {"learning_rate": ("log", 1e-4, 1e-1)},
      "pbt": {"population": 16, "num_intervals": 8, "exploit": 0.25, "perturb": (0.8, 1.25),
              "init": "grid"},
  }
