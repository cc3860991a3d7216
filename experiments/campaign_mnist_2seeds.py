"""`campaign_mnist` with every search candidate trained on 2 seeds (fitness: their mean validation
accuracy), on both sides. With one seed, two MLPs one validation image apart (3x128 and 3x256)
swap places between the sides by noise alone; this checks whether the learned side's pick holds
up when that noise is halved. Both sides spend twice the inner steps, so the ratio is unchanged.

    metalearn campaign --config experiments/campaign_mnist_2seeds.py --workdir runs/campaign_mnist_2seeds
"""
from campaign_mnist import get_config as base_config


def get_config():
  c = base_config()
  c.update(name="campaign_mnist_2seeds", seeds=(0, 1))
  return c
