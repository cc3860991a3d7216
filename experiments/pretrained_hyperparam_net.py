"""Recipe of the shipped `pretrained("hyperparam_net")` rule: HyperparamNet meta-trained with PES.

Same task distribution as `pretrained_default.py` (image MLPs on digits / mnist5k_8, horizons
100-1000, truncations of 20).

    metalearn meta-train --config experiments/pretrained_hyperparam_net.py \
        --workdir runs/pretrained_hyperparam_net

See docs/artifacts.md for the compute used and the evaluation.
"""
import ml_collections


def get_config():
  return ml_collections.ConfigDict(dict(
      name="pretrained_hyperparam_net",
      rule="hyperparam_net",
      task_families=("image_mlp",),
      num_task_types=4,
      task_seed=1,
      population_per_task=8,
      truncation_length=20,
      min_horizon=100,
      max_horizon=1000,
      estimator="pes",
      es_sigma=0.01,
      outer_lr=3e-3,
      num_outer_steps=3000,
      checkpoint_every=50,
      log_every=10,
      eval_horizon=500,
  ))
