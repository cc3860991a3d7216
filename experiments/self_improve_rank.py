"""Recipe of the rank-ordered self-improvement run (issue #14, 0.9.0): experiments/
self_improve_every.py with members ordered by their mean per-task rank (``best_by="rank"``) and
3 generations of 1,000 outer steps instead of 4 of 500.

Why. In the accept_every run (docs/self_improvement.md, "0.8.0") the best's fitness improved in
every generation, but held-out got worse in generation 2: its best won on the mean through one
family (the breast-cancer table, whose training loss a rule can drive to ~1e-4 of its start, a
log-ratio of -8.8 against -6.5) while getting worse on the tanh-MLP and autoencoder families.
Ranks per task are scale-free, so no family's spread carries the order (on that run's lineage the
rank order picks the same best in generations 0, 1, 3 and 4 and keeps generation 1's best in
generation 2). With ranks a generation improves only if a member passes the previous best on
most families; in that run the previous best made no accepted progress during its 500-step
generation 2, so generations are twice as long here (the same 60-minute budget allows it), with
fitness still measured every 125 outer steps.

    flock /tmp/metalearn-long.lock nice -n 5 metalearn self-improve \\
        --config experiments/self_improve_rank.py --workdir runs/si_rank
    metalearn report runs/si_rank
    # its Adam control (the same config, the meta-optimizer fixed to Adam):
    ... --workdir runs/si_rank_adam --config.meta_optimizer=adam

Measured alone on the shared 2-core CPU (2026-12-02): 34 min (2,037 s) for generation 0 and 3
generations. Best fitness -4.04, -5.59, -5.52, -5.91; held-out median 144, 1.06, 1.41, 1.00
(docs/self_improvement.md, "0.9.0"). Its Adam control: 26 min; held-out 144, 1.53, 1.31, 1.31.
"""
from self_improve import HELDOUT  # noqa: F401
from self_improve_aligned import TRAIN, VALIDATION  # noqa: F401
from self_improve_every import get_config as every_config


def get_config():
  c = every_config()
  c.name = "self_improve_rank"
  c.best_by = "rank"
  c.num_generations = 3
  c.generation_steps = 1000
  return c
