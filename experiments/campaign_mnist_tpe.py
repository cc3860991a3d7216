"""`campaign_mnist.py` searched with TPE (8 random start-up trials, seed 1) instead of evolution.

    metalearn campaign --config experiments/campaign_mnist_tpe.py --workdir runs/campaign_mnist_tpe
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "campaign_mnist", os.path.join(os.path.dirname(os.path.abspath(__file__)), "campaign_mnist.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
  c = _base.get_config()
  c.update(name="campaign_mnist_tpe", strategy="tpe", strategy_kwargs={"n_startup_trials": 8},
           seed=1)
  return c
