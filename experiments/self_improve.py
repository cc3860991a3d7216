"""Recipe of `self_improve`: learned rules that meta-train their own successors (docs/self_improvement.md).

A population of 8 MLPLOpt rules at random meta-parameters (the rule's init plus N(0, 1) on every
meta-parameter), each meta-trained with antithetic ES on small MLP / linear-regression tasks; every
member's meta-gradient is applied by the rule of the previous generation's best member (no Adam in
any loop). Every 300 outer steps: fitness on held-out meta-validation tasks (other datasets, shapes
and kinds), then PBT (bottom quarter copies the top quarter and perturbs). Sized for the shared
2-core CPU: measured 523 s wall for the 10 generations (the Adam control 483 s), both run side by
side on the shared machine; see docs/self_improvement.md for the results.

    metalearn self-improve --config experiments/self_improve.py --workdir runs/self_improve
    # the control (same compute, meta-optimizer fixed to Adam):
    metalearn self-improve --config experiments/self_improve.py --workdir runs/self_improve_adam \
        --config.meta_optimizer=adam
    metalearn report runs/self_improve
"""
from metalearn.meta.self_improve import default_config

TRAIN = [
    {"kind": "image_mlp", "dataset": "digits", "hidden": [16], "activation": "relu",
     "batch_size": 32},
    {"kind": "linreg", "dim": 16, "seed": 3, "batch_size": 16},
]

# Meta-validation (fitness): not meta-training tasks -- another activation and depth, another
# dataset kind, another loss.
VALIDATION = [
    {"kind": "image_mlp", "dataset": "digits", "hidden": [32, 32], "activation": "tanh",
     "batch_size": 64},
    {"kind": "quadratic", "dim": 24, "seed": 5, "batch_size": 8},
]

# Held-out evaluation in the report: a subset of the out_of_distribution suite that is cheap on
# CPU (the report trains each generation's best rule on it): linear regression, an autoencoder
# (reconstruction loss), a tabular MLP (another data kind; tuned Adam drives its training loss
# near zero, so its ratio is large for every rule).
HELDOUT = ("linreg_d32_s0@1000", "autoencoder_mnist5k_14_128x32_relu_b64@1000",
           "tabular_mlp_wine_32_tanh_b16@300")


def get_config():
  c = default_config()
  c.name = "self_improve"
  c.rule = "mlp_lopt"
  c.task_specs = tuple(TRAIN)
  c.population_per_task = 4
  c.truncation_length = 10
  c.min_horizon = 50
  c.max_horizon = 300
  c.estimator = "es"
  c.es_sigma = 0.01
  c.population_size = 8
  c.num_generations = 10
  c.generation_steps = 300
  c.init = "random"
  c.init_scale = 1.0
  c.meta_optimizer = "best"
  c.outer_lr = 3e-3            # used only by the Adam control
  c.exploit_fraction = 0.25
  c.explore_sigma = 0.05
  c.eval_tasks = tuple(VALIDATION)
  c.fitness_horizon = 200
  c.fitness_seeds = 2
  c.heldout_suite = "out_of_distribution"
  c.heldout_tasks = HELDOUT
  c.heldout_seeds = 2
  c.keep_checkpoints = 2
  return c
