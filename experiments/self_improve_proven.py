"""Recipe of a ScaledLOpt self-improvement run whose meta-optimizer must earn its job (issue #14,
0.12.0): experiments/self_improve_kinds.py with ``meta_optimizer="proven"``.

Why. In the kinds run (runs/si_kinds2, docs/self_improvement.md "0.12.0") the rule that trained
a generation decided how far it got, and fitness did not tell the good meta-optimizers from the
bad: the members that kept some of their generation's training were 1, 13, 4 and 0 of 16 under
the previous generation's best (a random rule, then rules that trained small nets better and
better), against 12, 9, 8 and 1 under Adam. Generation 1's best, a weak rule on fitness, was the
best meta-optimizer of that run; generation 3's, the best on fitness, moved no member at all.
Here half the members are trained by the incumbent (generation 0's best at first) and half by
the challenger: the previous generation's best member whose rule is not the incumbent's (its
runner-up when the best is the incumbent's rule). Whichever half gained more mean fitness over
the generation makes its rule the next incumbent (metalearn/meta/proven.py). No hand-designed
optimizer anywhere, as before; the same compute (every member still takes one outer step per
step). A first version, whose challenger was always the previous generation's best, stalled
(runs/si_proven): no member passed generation 0's best, so the challenger was the incumbent and
the random rule trained everyone for 4 generations.

Measured (0.12.0, shared 2-core CPU, 2026-12-08): the loop took 564 s (runs/si_proven2; 945 s
of wall time, with a report and tests running beside it); numbers in docs/self_improvement.md,
"0.12.0".

Everything else is self_improve_kinds.py's, so its Adam control (runs/si_kinds2_adam) is this
recipe's control too (meta_optimizer=adam ignores the choice).

    flock /tmp/metalearn-long.lock nice -n 5 metalearn self-improve \\
        --config experiments/self_improve_proven.py --workdir runs/si_proven2
    metalearn report runs/si_proven2
"""
from self_improve import HELDOUT  # noqa: F401
from self_improve_aligned import TRAIN  # noqa: F401
from self_improve_kinds import VALIDATION  # noqa: F401
from self_improve_kinds import get_config as kinds_config


def get_config():
  c = kinds_config()
  c.name = "self_improve_proven"
  c.meta_optimizer = "proven"
  return c
