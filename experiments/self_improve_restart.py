"""Recipe of the ScaledLOpt self-improvement run whose meta-optimizer restarts each generation
(issue #14, 0.11.0): experiments/self_improve_scaled_abs.py with ``meta_optimizer_horizon`` set
to the generation's length.

Why. In the 0.10.0 run (docs/self_improvement.md, "0.10.0") generation 1's best (fitness -6.66)
was never passed, and fewer and fewer members kept any point of their training: 11 of 16 in
generation 2, 1 in generation 3, none in generation 4. ScaledLOpt multiplies its step by a cosine
decay over the horizon it is told, and a learned meta-optimizer was told the whole run
(``meta_optimizer_horizon=0``: 4 x 500 = 2,000 outer steps, one state). So its step was
0.85-0.5 of its peak through generation 2, 0.5-0.15 through generation 3 and 0.15-0 through
generation 4: the meta-optimizer froze the population as the run went on, whatever its
direction. Here every member's meta-optimizer state restarts at each generation and the rule is
told 500 steps, a full schedule per generation (warm restarts). Nothing else changes; the Adam
control (constant rate) ignores the setting, so its run is the 0.10.0 control.

    flock /tmp/metalearn-long.lock nice -n 5 metalearn self-improve \\
        --config experiments/self_improve_restart.py --workdir runs/si_restart
    metalearn report runs/si_restart
"""
from self_improve import HELDOUT  # noqa: F401
from self_improve_aligned import TRAIN, VALIDATION  # noqa: F401
from self_improve_scaled_abs import get_config as scaled_abs_config


def get_config():
  c = scaled_abs_config()
  c.name = "self_improve_restart"
  c.meta_optimizer_horizon = c.generation_steps
  return c
