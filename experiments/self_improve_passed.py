"""Recipe of the self-improvement run whose generations end when a member passes the previous
best (issue #14, 0.10.0): experiments/self_improve_linreg.py with ``generation_end="passed"`` and
``best_by="dominant"``.

Why. In the 0.8.0 and 0.9.0 runs (docs/self_improvement.md) a generation was a fixed number of
outer steps, and two things went wrong with it. A generation's best could trade a meta-validation
family away for a gain on another (the mean and the rank order both allow it), and held-out got
worse with it. Requiring the best to be no worse on any family (``best_by="dominant"``, 0.8.0)
stopped that, but then the best tied in generations where no member dominated it within the
fixed length. Here a generation ends at the first fitness check (every 125 outer steps, from
step 250 on) where some member's kept point is no worse than the previous best on every
meta-validation family (up to 0.1, about 10% in final loss) and better on the mean by more than
0.05; it runs at most 1,000 outer steps (then it ends, passed or not). The best is the lowest
mean among the members no worse than the previous best (same tolerance).

The tolerance is there because the first run without one (``--config.dominance_tolerance=0``,
`runs/si_passed_strict`, stopped after generation 1) never passed generation 0's random best in
1,000 outer steps: two members were better on the mean by 1.5 (-6.04 and -6.01 against -4.45)
and worse only on the breast-cancer table, by 0.05 and 0.10.

    flock /tmp/metalearn-long.lock nice -n 5 metalearn self-improve \\
        --config experiments/self_improve_passed.py --workdir runs/si_passed
    metalearn report runs/si_passed
    # its Adam control (the same config, the meta-optimizer fixed to Adam):
    ... --workdir runs/si_passed_adam --config.meta_optimizer=adam
"""
from self_improve import HELDOUT  # noqa: F401
from self_improve_aligned import TRAIN  # noqa: F401
from self_improve_linreg import VALIDATION  # noqa: F401
from self_improve_linreg import get_config as linreg_config


def get_config():
  c = linreg_config()
  c.name = "self_improve_passed"
  c.best_by = "dominant"
  c.generation_end = "passed"
  c.generation_min_steps = 250
  c.pass_margin = 0.05
  c.dominance_tolerance = 0.1
  c.generation_steps = 1000
  c.num_generations = 4
  return c
