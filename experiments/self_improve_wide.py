"""Recipe of the wide self-improvement run (issue #14, 0.8.0): twice the population, half the
generation length, the same compute per generation as experiments/self_improve_aligned.py.

Why. In the aligned run (docs/self_improvement.md, "0.7.0") generation 1's best (fitness -5.55,
held-out 1.10) was never beaten: the population's median kept improving (-2.54 ... -5.27) but no
single member passed the best, because one 1,000-step generation took the best most of the way
and 8 members gave few chances to pass it afterwards. Here 16 members train 500 outer steps per
generation, so each generation has twice the draws (8 of them PBT copies of the top quarter,
perturbed) and the first generation's step is smaller.

    flock /tmp/metalearn-long.lock nice -n 5 metalearn self-improve \\
        --config experiments/self_improve_wide.py --workdir runs/si_wide
    metalearn report runs/si_wide
    # its Adam control (the same config, the meta-optimizer fixed to Adam):
    ... --workdir runs/si_wide_adam --config.meta_optimizer=adam

Measured alone on the shared 2-core CPU (2026-12-01): 16 min 58 s for generation 0 and 4
generations (about 250 s a generation). Best fitness -4.04, -5.19, -5.19, -5.34, -5.34; held-out
median 144, 1.23, 1.23, 1.07, 1.07 (docs/self_improvement.md, "0.8.0"). Its Adam control was not
run (the accept_every recipe's was).
"""
from self_improve import HELDOUT  # noqa: F401
from self_improve_aligned import TRAIN, VALIDATION  # noqa: F401
from self_improve_aligned import get_config as aligned_config


def get_config():
  c = aligned_config()
  c.name = "self_improve_wide"
  c.population_size = 16
  c.generation_steps = 500
  c.num_generations = 4
  return c
