"""Recipe of a self-improvement run of ScaledLOpt rules, `default`'s architecture (issue #14,
0.9.0): experiments/self_improve_every.py with ``rule="scaled_lopt"`` in place of MLPLOpt.

Why. The best self-improved MLPLOpt rules match tuned Adam on the 3 held-out tasks, but on the
whole out-of-distribution suite the 0.8.0 `accept_every` run's final rule reaches tuned Adam on
8 of 15 tasks (median speedup 0.50): it fails on the wide and deep MLPs (final loss 0.18 against
0.044 on the 256x3 MLP), which MLPLOpt's absolute step sizes do not carry over to from the small
meta-training MLPs. ScaledLOpt's steps are relative to each tensor's RMS, which is what makes
`default` transfer to those widths. Here the population starts at random ScaledLOpt
meta-parameters (its init plus N(0, 1) on every one) and, as before, no hand-designed optimizer
trains anything: each member's meta-gradient is applied by the previous generation's best
ScaledLOpt rule.

    flock /tmp/metalearn-long.lock nice -n 5 metalearn self-improve \\
        --config experiments/self_improve_scaled.py --workdir runs/si_scaled
    metalearn report runs/si_scaled
    python experiments/eval_cached_adam.py runs/si_scaled/generations/gen_004.safetensors \\
        --cache_dir CACHE      # the whole out-of-distribution suite against tuned Adam

Measured alone on the shared 2-core CPU (2026-12-02): 17 min (1,005 s). It stalls: generation
0's best random rule (fitness -4.30, held-out 3.95) is never passed; 1 of 16 members kept a
point in generation 1 and none after (docs/self_improvement.md, "0.9.0").
"""
from self_improve import HELDOUT  # noqa: F401
from self_improve_aligned import TRAIN, VALIDATION  # noqa: F401
from self_improve_every import get_config as every_config


def get_config():
  c = every_config()
  c.name = "self_improve_scaled"
  c.rule = "scaled_lopt"
  return c
