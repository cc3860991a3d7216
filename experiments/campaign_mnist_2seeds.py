"""`campaign_mnist` with every search candidate trained on 2 seeds (fitness: their mean validation
accuracy), on both sides. With one seed, two MLPs one validation image apart (3x128 and 3x256)
swap places between the sides by noise alone; this checks whether the learned side's pick holds
up when that noise is halved. Both sides spend twice the inner steps, so the ratio is unchanged.

    metalearn campaign --config experiments/campaign_mnist_2seeds.py --workdir runs/campaign_mnist_2seeds
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "campaign_mnist", os.path.join(os.path.dirname(os.path.abspath(__file__)), "campaign_mnist.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
  c = _base.get_config()
  c.update(name="campaign_mnist_2seeds", seeds=(0, 1))
  return c
