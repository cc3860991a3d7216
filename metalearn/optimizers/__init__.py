"""Learned update rules. Each has ``init_meta_params(key)`` and ``as_optax(theta, *, num_steps)``."""
from metalearn.optimizers.base import LearnedRule
from metalearn.optimizers.baselines import LearnableAdam, LearnableSGDM
from metalearn.optimizers.hyper_lopt import HyperLOpt
from metalearn.optimizers.hyperparam_net import HyperparamNet
from metalearn.optimizers.mlp_lopt import MLPLOpt
from metalearn.optimizers.scaled_lopt import ScaledLOpt

RULES = {
    "mlp_lopt": MLPLOpt,
    "hyperparam_net": HyperparamNet,
    "adam": LearnableAdam,
    "sgdm": LearnableSGDM,
    "scaled_lopt": ScaledLOpt,
    "hyper_lopt": HyperLOpt,
}


def make_rule(name: str, **kwargs) -> LearnedRule:
  """Builds a rule by name (a key of ``RULES``)."""
  if name not in RULES:
    raise ValueError(f"unknown rule {name!r}; choose one of {sorted(RULES)}.")
  return RULES[name](**kwargs)


__all__ = ["LearnedRule", "MLPLOpt", "HyperparamNet", "LearnableAdam", "LearnableSGDM", "ScaledLOpt", "HyperLOpt",
           "RULES",
           "make_rule"]
