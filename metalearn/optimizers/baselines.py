"""Hand-designed optimizers with learnable log-hyperparameters, behind the learned-rule interface.

Meta-training one of these is hyperparameter search by gradient: ``theta`` holds the log learning
rate (plus logits of the decays), so ``theta`` is small and every estimator applies unchanged.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalearn.optimizers import base


def _with_checks(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """Adds the float-params check and extra-args tolerance to a plain optax transformation."""
  tx = optax.with_extra_args_support(tx)

  def init_fn(params):
    base.check_float_params(params)
    return tx.init(params)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    return tx.update(updates, state, params)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@dataclasses.dataclass(frozen=True)
class LearnableAdam(base.LearnedRule):
  """AdamW whose log learning rate, decay logits and log weight decay are meta-parameters.

  ``u = -lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)`` with ``lr = exp(log_lr)``,
  ``b1 = sigmoid(logit_b1)``, ``b2 = sigmoid(logit_b2)``, ``wd = exp(log_wd)``.
  """
  init_lr: float = 1e-3
  eps: float = 1e-8
  name: str = "adam"

  def config(self):
    return dataclasses.asdict(self)

  def init_meta_params(self, key):
    del key
    f = lambda x: jnp.asarray(x, jnp.float32)
    return {"log_lr": f(np.log(self.init_lr)), "logit_b1": f(np.log(0.9 / 0.1)),
            "logit_b2": f(np.log(0.999 / 0.001)), "log_wd": f(np.log(1e-6))}

  def as_optax(self, theta, *, num_steps):
    base.check_num_steps(num_steps)
    self.check_meta_params(theta)
    tx = optax.adamw(jnp.exp(theta["log_lr"]), b1=jax.nn.sigmoid(theta["logit_b1"]),
                     b2=jax.nn.sigmoid(theta["logit_b2"]), eps=self.eps,
                     weight_decay=jnp.exp(theta["log_wd"]))
    return _with_checks(tx)


@dataclasses.dataclass(frozen=True)
class LearnableSGDM(base.LearnedRule):
  """SGD with momentum: ``m <- mu m + g``, ``u = -lr m``; ``lr = exp(log_lr)``, ``mu = sigmoid(.)``."""
  init_lr: float = 0.1
  name: str = "sgdm"

  def config(self):
    return dataclasses.asdict(self)

  def init_meta_params(self, key):
    del key
    f = lambda x: jnp.asarray(x, jnp.float32)
    return {"log_lr": f(np.log(self.init_lr)), "logit_momentum": f(np.log(0.9 / 0.1))}

  def as_optax(self, theta, *, num_steps):
    base.check_num_steps(num_steps)
    self.check_meta_params(theta)
    tx = optax.sgd(jnp.exp(theta["log_lr"]), momentum=jax.nn.sigmoid(theta["logit_momentum"]))
    return _with_checks(tx)
