"""`campaign_mnist.py` searched with TPE (8 random start-up trials, seed 1) instead of evolution.

    metalearn campaign --config experiments/campaign_mnist_tpe.py --workdir runs/campaign_mnist_tpe
"""
from campaign_mnist import get_config as base_config


def get_config():
  c = base_config()
  c.update(name="campaign_mnist_tpe", strategy="tpe", strategy_kwargs={"n_startup_trials": 8},
           seed=1)
  return c
