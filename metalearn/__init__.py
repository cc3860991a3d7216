"""metalearn: meta-learned optimizers and hyperparameter networks in JAX, as optax transformations."""
from metalearn import optimizers

__version__ = "0.1.0"
