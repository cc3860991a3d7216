"""Recipe of a ScaledLOpt population whose rules meta-train with absolute steps (issue #14,
0.10.0): experiments/self_improve_scaled.py with ``meta_optimizer_rule_kwargs={"relative":
False}``.

Why. The ScaledLOpt population of 0.9.0 stalled: generation 0's best random rule was never
passed. experiments/meta_optimizer_steps.py shows why (docs/self_improvement.md, "0.10.0"). As
the meta-optimizer, a ScaledLOpt rule makes each step a fraction of the theta tensor's own RMS,
and such steps compound. Given 100 steps of one fixed unit meta-gradient, generation 0's best
rule (the one that meta-trained every member of generation 1) moved theta by 5.5e8 in norm,
where the best random MLPLOpt rule moved it by 11; given a fresh random direction at every
step, by 26 against 1.4. Here the members
are the same ScaledLOpt rules and the same meta-parameters meta-train them, but with the
RMS-relative scale off (``relative=False``: a step is ``lr_k * n_k * D``, not ``lr_k *
max(rms(p), floor) * n_k * D``). The rules the members are, and that the held-out evaluation
runs, keep their relative steps.

    flock /tmp/metalearn-long.lock nice -n 5 metalearn self-improve \\
        --config experiments/self_improve_scaled_abs.py --workdir runs/si_scaled_abs
    metalearn report runs/si_scaled_abs
    # its Adam control (the same config, the meta-optimizer fixed to Adam):
    ... --workdir runs/si_scaled_abs_adam --config.meta_optimizer=adam

Measured alone on the shared 2-core CPU (2026-12-02): 16 min (953 s) for generation 0 and 4
generations. Best fitness -4.30, -6.66, -6.66, -6.66, -6.66 (the stall is gone in generation 1,
then it ties); held-out median 3.95, 0.979, 0.979, 0.979, 0.979 (docs/self_improvement.md,
"0.10.0").
"""
from self_improve import HELDOUT  # noqa: F401
from self_improve_aligned import TRAIN, VALIDATION  # noqa: F401
from self_improve_scaled import get_config as scaled_config


def get_config():
  c = scaled_config()
  c.name = "self_improve_scaled_abs"
  c.meta_optimizer_rule_kwargs = {"relative": False}
  return c
