"""The default meta-training config (what `metalearn meta-train` uses without --config).

MLPLOpt meta-trained with PES on two small image-MLP tasks from bundled data (sampled from
ImageMLPFamily with task_seed 0), horizons 50-200. Finishes in a few minutes on 2 CPU cores.
"""
from metalearn.meta.config import default_config


def get_config():
  return default_config()
