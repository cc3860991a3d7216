"""metalearn: meta-learned optimizers and hyperparameter networks in JAX, as optax transformations.

    import metalearn as ml
    tx = ml.pretrained("default", num_steps=2000)           # a shipped learned optimizer
    tx = ml.optimizers.MLPLOpt().as_optax(theta, num_steps=2000)
    tx = ml.load_optimizer("runs/my_run", num_steps=2000)    # a meta-train result
"""
from metalearn import optimizers, tasks
from metalearn.api import load_optimizer, pretrained, pretrained_names, pretrained_rule

__version__ = "0.12.0"

__all__ = ["optimizers", "tasks", "load_optimizer", "pretrained", "pretrained_names",
           "pretrained_rule"]
