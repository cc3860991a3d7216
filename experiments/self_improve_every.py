"""Recipe of the self-improvement run that keeps the best point of each member's generation
(issue #14, 0.8.0): experiments/self_improve_wide.py with fitness also measured every 125 outer
steps inside a generation (``accept_every``).

Why. In every accepted run so far (docs/self_improvement.md, "0.5.0" to "0.8.0") a member's
training is judged once, at the end of its generation, against its start; members improve in
the first few hundred steps of a generation and then often lose it again, so a generation in
which every member's end is worse than its start ties, although points along the way were
better. With ``accept_every=125`` fitness is also measured at steps 125, 250 and 375; each of
those points and the end is judged with the same ``improved_all`` rule against the generation's
start, and a member keeps the passing point with the best mean (or its start). It costs 3 more
fitness measurements per generation.

    flock /tmp/metalearn-long.lock nice -n 5 metalearn self-improve \\
        --config experiments/self_improve_every.py --workdir runs/si_every
    metalearn report runs/si_every
    # its Adam control (the same config, the meta-optimizer fixed to Adam):
    ... --workdir runs/si_every_adam --config.meta_optimizer=adam

Measured alone on the shared 2-core CPU (2026-12-01): 21 min 55 s for generation 0 and 4
generations (about 330 s a generation). Best fitness -4.04, -5.19, -5.56, -5.63, -5.71 (better in
every generation); held-out median 144, 1.23, 1.36, 1.20, 0.999 (docs/self_improvement.md,
"0.8.0").
"""
from self_improve import HELDOUT  # noqa: F401
from self_improve_aligned import TRAIN, VALIDATION  # noqa: F401
from self_improve_wide import get_config as wide_config


def get_config():
  c = wide_config()
  c.name = "self_improve_every"
  c.accept_every = 125
  return c
