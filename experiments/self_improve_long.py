"""Recipe of the longer `self_improve` run: fewer, longer generations and a meta-validation set
closer to the held-out kinds (docs/self_improvement.md, "The longer run").

Same population, rule, random start, estimator and meta-training tasks as
experiments/self_improve.py; what changed, and why (from the 9-minute run's report):
  * meta-validation adds an autoencoder (on 8x8 digits: another dataset and size than the held-out
    14x14 one): the 9-minute run's held-out score plateaued on the autoencoder task, which fitness
    (an MLP and a quadratic) did not measure, so selection could not see it;
  * 3 fitness seeds instead of 2 (the best member's fitness fell back twice in 10 generations);
  * 5 generations of 2,000 outer steps instead of 10 of 300: each generation's best rule meta-trains
    the next for longer, so one generation's change is larger than the fitness noise.

    flock /tmp/metalearn-long.lock nice -n 5 sh -c '
      timeout -s TERM 2700 metalearn self-improve --config experiments/self_improve_long.py \\
          --workdir runs/self_improve_long &
      timeout -s TERM 2700 metalearn self-improve --config experiments/self_improve_long.py \\
          --workdir runs/self_improve_long_adam --config.meta_optimizer=adam &
      wait'
    METALEARN_EVAL_CACHE=/work/evalcache metalearn report runs/self_improve_long
    # the elitist variant (the best rule so far is the meta-optimizer; docs/self_improvement.md):
    flock /tmp/metalearn-long.lock nice -n 5 timeout -s TERM 2400 metalearn self-improve \
        --config experiments/self_improve_long.py --workdir runs/self_improve_long_elite \
        --config.meta_optimizer=elite
    # 0.5.0 (docs/self_improvement.md, "0.5.0"): a member keeps a generation's training only if
    # its fitness improved (616 s alone), and the meta-optimizer told 200-step horizons (780 s):
    flock /tmp/metalearn-long.lock nice -n 5 timeout -s TERM 1800 metalearn self-improve \
        --config experiments/self_improve_long.py --workdir runs/self_improve_long_accept \
        --config.accept=improved
    flock /tmp/metalearn-long.lock nice -n 5 timeout -s TERM 1500 metalearn self-improve \
        --config experiments/self_improve_long.py --workdir runs/self_improve_long_elite_h200 \
        --config.meta_optimizer=elite --config.meta_optimizer_horizon=200
"""
from self_improve import HELDOUT, TRAIN, VALIDATION as VALIDATION_V1  # noqa: F401
from self_improve import get_config as v1_config

VALIDATION = VALIDATION_V1 + [
    {"kind": "autoencoder", "dataset": "digits", "hidden": [16], "activation": "relu",
     "batch_size": 32},
]


def get_config():
  c = v1_config()
  c.name = "self_improve_long"
  c.eval_tasks = tuple(VALIDATION)
  c.fitness_seeds = 3
  c.num_generations = 5
  c.generation_steps = 2000
  return c
