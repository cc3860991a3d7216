"""Hand-designed optimizers with learnable log-hyperparameters, behind the learned-rule interface.

Meta-training one of these is hyperparameter search by gradient: ``theta`` holds the log learning
rate (plus logits of the decays), so ``theta`` is small and every estimator applies unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.optimizers import base


def _safe(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """``tx`` fed safe gradients (NaN/Inf elements as zero, finite ones clipped to 1e18), so that a
  bad element leaves the state finite and its neighbours' updates untouched; extra args ignored."""
  tx = optax.with_extra_args_support(tx)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    safe = jax.tree.map(lambda g: base.safe_gradient(g).astype(g.dtype), updates)
    new_updates, state = tx.update(safe, state, params)
    # Parameters keep their dtype (optax follows the gradient's).
    if params is not None:
      new_updates = jax.tree.map(lambda u, p: u.astype(jnp.result_type(p)), new_updates, params)
    return new_updates, state

  return optax.GradientTransformationExtraArgs(tx.init, update_fn)


def _ops(theta):
  """numpy for concrete theta (a transformation built under a trace must not keep its tracers),
  jax.numpy for traced theta (meta-training)."""
  if all(isinstance(x, np.ndarray) for x in jax.tree.leaves(theta)):
    return np.exp, lambda x: 1 / (1 + np.exp(-x))
  return jnp.exp, jax.nn.sigmoid


@dataclasses.dataclass(frozen=True)
class LearnableAdam(base.LearnedRule):
  """AdamW whose log learning rate, decay logits and log weight decay are meta-parameters.

  ``u = -lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)`` with ``lr = exp(log_lr)``,
  ``b1 = sigmoid(logit_b1)``, ``b2 = sigmoid(logit_b2)``, ``wd = exp(log_wd)``.
  """
  init_lr: float = 1e-3
  eps: float = 1e-8

  name: ClassVar[str] = "adam"
  math_version: ClassVar[int] = 2  # 2: safe gradients

  def init_meta_params(self, key):
    del key
    f = lambda x: jnp.asarray(x, jnp.float32)
    return {"log_lr": f(np.log(self.init_lr)), "logit_b1": f(np.log(0.9 / 0.1)),
            "logit_b2": f(np.log(0.999 / 0.001)), "log_wd": f(np.log(1e-6))}

  def transformation(self, theta, num_steps):
    del num_steps
    exp, sigmoid = _ops(theta)
    tx = optax.adamw(exp(theta["log_lr"]), b1=sigmoid(theta["logit_b1"]),
                     b2=sigmoid(theta["logit_b2"]), eps=self.eps,
                     weight_decay=exp(theta["log_wd"]))
    return _safe(tx)


@dataclasses.dataclass(frozen=True)
class LearnableSGDM(base.LearnedRule):
  """SGD with momentum: ``m <- mu m + g``, ``u = -lr m``; ``lr = exp(log_lr)``, ``mu = sigmoid(.)``."""
  init_lr: float = 0.1

  name: ClassVar[str] = "sgdm"
  math_version: ClassVar[int] = 2  # 2: safe gradients

  def init_meta_params(self, key):
    del key
    f = lambda x: jnp.asarray(x, jnp.float32)
    return {"log_lr": f(np.log(self.init_lr)), "logit_momentum": f(np.log(0.9 / 0.1))}

  def transformation(self, theta, num_steps):
    del num_steps
    exp, sigmoid = _ops(theta)
    tx = optax.sgd(exp(theta["log_lr"]), momentum=sigmoid(theta["logit_momentum"]))
    return _safe(tx)
