"""Recipe of a ScaledLOpt population with absolute meta-steps, ordered by rank (issue #14,
0.10.0): experiments/self_improve_scaled_abs.py with ``best_by="rank"``.

Why. In the scaled_abs run (docs/self_improvement.md, "0.10.0") generation 1's best (-6.66) was
never passed in the next 1,500 outer steps. Its mean is carried by two families, the tanh MLP
(-8.48) and the breast-cancer table (-10.33), and it is worse than other rules on the digits
autoencoder. Ranked per family, a member that is better on most families can lead without
beating those two outliers on the mean.

    flock /tmp/metalearn-long.lock nice -n 5 metalearn self-improve \\
        --config experiments/self_improve_scaled_rank.py --workdir runs/si_scaled_rank
    metalearn report runs/si_scaled_rank
"""
from self_improve import HELDOUT  # noqa: F401
from self_improve_aligned import TRAIN, VALIDATION  # noqa: F401
from self_improve_scaled_abs import get_config as scaled_abs_config


def get_config():
  c = scaled_abs_config()
  c.name = "self_improve_scaled_rank"
  c.best_by = "rank"
  return c
