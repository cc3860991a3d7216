"""User-facing entry points: shipped rules and meta-train results as optax transformations.

A thin face over ``metalearn.artifacts``, which resolves every source of a rule.
"""
from __future__ import annotations

import optax

import metalearn.artifacts as artifacts
from metalearn.optimizers.base import rule_as_optax

pretrained_names = artifacts.pretrained_names


def pretrained_rule(name: str):
  """``(rule, theta, info)`` of a shipped rule; raises ValueError for an unknown name."""
  return artifacts.pretrained(name)


def pretrained(name: str = "default", *, num_steps: int,
               grouped: bool = False) -> optax.GradientTransformationExtraArgs:
  """A shipped learned rule as an optax transformation, told that training lasts ``num_steps``
  (``grouped``: see ``LearnedRule.as_optax``)."""
  rule, theta, _ = artifacts.pretrained(name)
  return rule_as_optax(rule, theta, num_steps=num_steps, grouped=grouped)


def load_optimizer(source: str, *, num_steps: int,
                   grouped: bool = False) -> optax.GradientTransformationExtraArgs:
  """The rule at ``source``: a meta-train workdir (newest checkpoint), a ``.safetensors`` export,
  ``pretrained:NAME`` or ``init:RULE`` (see ``metalearn.artifacts.FORMS``)."""
  rule, theta, _ = artifacts.resolve(source)
  return rule_as_optax(rule, theta, num_steps=num_steps, grouped=grouped)
