"""User-facing entry points: shipped rules and meta-train results as optax transformations."""
from __future__ import annotations

import os
from importlib import resources

import optax

PRETRAINED_PACKAGE = "metalearn.optimizers.pretrained"


def _pretrained_dir():
  return resources.files(PRETRAINED_PACKAGE)


def pretrained_names() -> list[str]:
  """Names of the meta-parameter sets shipped inside the package."""
  return sorted(p.name[:-len(".safetensors")] for p in _pretrained_dir().iterdir()
                if p.name.endswith(".safetensors"))


def pretrained_rule(name: str):
  """``(rule, theta, info)`` of a shipped rule; raises ValueError for an unknown name."""
  from metalearn.optimizers.serialization import load_rule
  names = pretrained_names()
  if name not in names:
    raise ValueError(f"unknown pretrained rule {name!r}; available: {', '.join(names) or 'none'}.")
  with resources.as_file(_pretrained_dir() / f"{name}.safetensors") as path:
    return load_rule(str(path))


def pretrained(name: str = "default", *, num_steps: int) -> optax.GradientTransformationExtraArgs:
  """A shipped learned rule as an optax transformation, told that training lasts ``num_steps``."""
  rule, theta, _ = pretrained_rule(name)
  return rule.as_optax(theta, num_steps=num_steps)


def load_optimizer(path: str, *, num_steps: int) -> optax.GradientTransformationExtraArgs:
  """The rule meta-trained in workdir ``path`` (latest checkpoint) or a ``.safetensors`` export."""
  from metalearn.meta.trainer import load_meta_params
  from metalearn.optimizers.serialization import load_rule
  if os.path.isfile(path):
    rule, theta, _ = load_rule(path)
  else:
    rule, theta, _ = load_meta_params(path)
  return rule.as_optax(theta, num_steps=num_steps)
