"""The meta-training config itself, tuned by TPE and scored by the held-out evaluation.

    metalearn search --config experiments/search_meta_config.py --workdir runs/search_meta

Each trial meta-trains the default recipe (experiments/default.py: MLPLOpt, PES, two digits-MLP
task types) for 200 outer steps with the trial's outer learning rate, perturbation scale,
truncation length and population, then scores its rule on held-out tasks (a wider digits MLP and
a GELU MLP on MNIST 8x8) as the mean of (rule's final test loss / Adam(1e-3)'s): lower is better,
1 is "as good as Adam". Intermediate evaluations every 50 steps feed the median pruner. Trials
change shapes, so they run one after another (batch_size 1); share the study between workers with
--storage to run several at once. About 2-4 minutes a trial on 2 CPU cores.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config():
  return {
      "name": "meta_config",
      "target": "meta",
      "meta_config": os.path.join(HERE, "default.py"),
      "meta_overrides": {
          "num_outer_steps": 200,
          "eval_every": 50,
          "eval_horizon": 200,
          "eval_tasks": [
              {"kind": "image_mlp", "dataset": "digits", "hidden": [64], "batch_size": 64},
              {"kind": "image_mlp", "dataset": "mnist5k_8", "hidden": [32], "activation": "gelu",
               "batch_size": 64},
          ],
      },
      "space": {
          "outer_lr": ("log", 3e-4, 1e-2),
          "es_sigma": ("log", 1e-3, 1e-1),
          "truncation_length": ("int", 5, 25, 5),
          "population_per_task": [8, 16],
      },
      "sampler": "tpe",
      "pruner": "median",
      "trials": 12,
      "batch_size": 1,
  }
