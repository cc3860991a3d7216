"""Tasks: a flax NNX model, a dataset on the device, a batch sampler and a loss, as pure functions.

A ``TaskSpec`` is a small hashable, JSON-able description (what families sample). ``make_task(spec)``
builds a ``Task`` whose functions take the parameter pytree explicitly, so the meta-trainer can
``jit``, ``vmap`` and ``lax.scan`` them:

    params = task.init(key)                    # nnx.State of the model's nnx.Param leaves
    batch = task.batch(task.data, key)         # gathered by index inside jit
    loss = task.loss(params, batch)
    model = task.model(params)                 # nnx.merge, for users' own code

The dataset is an argument of ``batch`` (not a closed-over constant) so that it is passed to the
compiled function once, as a device array, instead of being baked into the program.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from metalearn.tasks.models import activation

# kind -> builder(spec, data_dir) -> Task; filled by metalearn.tasks.builders and register_kind.
KINDS: dict[str, Callable[["TaskSpec", str | None], "Task"]] = {}


def register_kind(kind: str):
  """Decorator: registers ``builder(spec, data_dir) -> Task`` as the way to build tasks of ``kind``.

  New kinds of task plug in here without editing this package::

      @register_kind("my_kind")
      def build(spec, data_dir): return Task(spec, ...)
  """
  def register(builder):
    KINDS[kind] = builder
    return builder
  return register


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """A concrete task. Fields unused by a ``kind`` keep their defaults."""

  kind: str
  dataset: str = ""
  hidden: tuple[int, ...] = ()
  activation: str = "relu"
  batch_size: int = 128
  dim: int = 0            # quadratic / linreg dimension
  seq_len: int = 0        # char_lm, rnn_lm
  d_model: int = 0
  num_layers: int = 0
  num_heads: int = 0
  seed: int = 0           # synthetic data (quadratic, linreg)
  kernel_size: int = 3    # cnn, cnn_norm

  def __post_init__(self):
    object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
    if self.kind not in KINDS:
      raise ValueError(f"unknown task kind {self.kind!r}; choose one of {sorted(KINDS)} (or "
                       "register a builder with metalearn.tasks.register_kind).")
    if any(h < 1 for h in self.hidden):
      raise ValueError(f"hidden widths must be >= 1, got {self.hidden}.")
    if self.kernel_size < 1:
      raise ValueError(f"kernel_size must be >= 1, got {self.kernel_size}.")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
    if self.kind in ("quadratic", "linreg") and self.dim < 1:
      raise ValueError(f"{self.kind} task needs dim >= 1, got {self.dim}.")
    if self.kind == "char_lm" and min(self.seq_len, self.d_model, self.num_layers,
                                      self.num_heads) < 1:
      raise ValueError("char_lm task needs seq_len, d_model, num_layers and num_heads >= 1.")
    if self.kind == "rnn_lm" and min(self.seq_len, self.d_model, self.num_layers) < 1:
      raise ValueError("rnn_lm task needs seq_len, d_model and num_layers >= 1.")
    if self.kind in ("image_mlp", "cnn", "cnn_norm", "autoencoder", "tabular_mlp") and (
        not self.dataset):
      raise ValueError(f"{self.kind} task needs a dataset name.")
    activation(self.activation)  # validates the name

  @property
  def name(self) -> str:
    if self.kind == "quadratic":
      return f"quadratic_d{self.dim}_s{self.seed}"
    if self.kind == "linreg":
      return f"linreg_d{self.dim}_s{self.seed}"
    if self.kind in ("char_lm", "rnn_lm"):
      return (f"{self.kind}_{self.dataset or 'pychars'}_L{self.num_layers}_d{self.d_model}"
              f"_T{self.seq_len}_b{self.batch_size}")
    h = "x".join(map(str, self.hidden)) or "linear"
    k = f"_k{self.kernel_size}" if self.kernel_size != 3 else ""
    return f"{self.kind}_{self.dataset}_{h}{k}_{self.activation}_b{self.batch_size}"

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["hidden"] = list(self.hidden)
    if d["kernel_size"] == 3:  # the default is left out, so specs (and cache keys) of older
      del d["kernel_size"]     # releases stay as they were
    return d

  @classmethod
  def from_dict(cls, d: dict) -> "TaskSpec":
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
      raise ValueError(f"unknown TaskSpec fields {sorted(unknown)}; valid: {sorted(fields)}.")
    return cls(**d)


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """A task as pure functions of a parameter pytree (see module docstring)."""

  spec: TaskSpec
  make_model: Callable[[nnx.Rngs], nnx.Module]
  data: Any              # training split, device arrays
  test_data: Any         # held-out split, device arrays
  batch: Callable[[Any, jax.Array], Any]
  loss_fn: Callable[[nnx.Module, Any], jax.Array]   # (model, batch) -> scalar loss
  apply: Callable[[nnx.Module, Any], Any] | None = None  # (model, batch) -> output, if it has one
  metric_fn: Callable[[nnx.Module, Any], jax.Array] | None = None  # (model, batch) -> accuracy

  @property
  def name(self) -> str:
    return self.spec.name

  @functools.cached_property
  def graphdef(self):
    return nnx.split(nnx.eval_shape(lambda: self.make_model(nnx.Rngs(0))), nnx.Param)[0]

  def init(self, key: jax.Array):
    """Fresh parameters (an ``nnx.State`` of float arrays) for this task's model."""
    return nnx.split(self.make_model(nnx.Rngs(params=key)), nnx.Param)[1]

  def model(self, params) -> nnx.Module:
    return nnx.merge(self.graphdef, params)

  def loss(self, params, batch) -> jax.Array:
    return self.loss_fn(self.model(params), batch)

  def sample_batch(self, key: jax.Array, split: str = "train"):
    return self.batch(self.data if split == "train" else self.test_data, key)

  def eval_loss(self, params, key: jax.Array, num_batches: int = 4, split: str = "test"):
    """Mean loss over ``num_batches`` random batches of a split (default: held out)."""
    data = self.data if split == "train" else self.test_data
    keys = jax.random.split(key, num_batches)
    return jnp.mean(jax.vmap(lambda k: self.loss(params, self.batch(data, k)))(keys))

  def accuracy(self, params, data, key: jax.Array | None = None, num_batches: int = 8):
    """Classification accuracy of ``params`` on a split's arrays ``data`` (e.g. ``task.test_data``).

    Splits of ``{"x", "y"}`` are scored whole; others (token streams) on ``num_batches`` random
    batches drawn with ``key``. Tasks that are not classifiers have no accuracy (``ValueError``).
    """
    if self.metric_fn is None:
      raise ValueError(f"task {self.name} ({self.spec.kind}) has no accuracy: it is not a "
                       "classifier.")
    model = self.model(params)
    if isinstance(data, dict) and set(data) == {"x", "y"}:
      return self.metric_fn(model, data)
    keys = jax.random.split(jax.random.key(0) if key is None else key, num_batches)
    return jnp.mean(jax.vmap(lambda k: self.metric_fn(model, self.batch(data, k)))(keys))

  def num_params(self) -> int:
    shapes = jax.eval_shape(self.init, jax.random.key(0))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def make_task(spec: TaskSpec | dict | str, data_dir: str | None = None) -> Task:
  """Builds (and caches) the task for a spec, a spec dict, or a JSON string of one."""
  if isinstance(spec, str):
    spec = json.loads(spec)
  if isinstance(spec, dict):
    spec = TaskSpec.from_dict(spec)
  if not isinstance(spec, TaskSpec):
    raise TypeError(f"make_task takes a TaskSpec, dict or JSON string, got {type(spec).__name__}.")
  return _cached_task(spec, data_dir)


@functools.lru_cache(maxsize=64)
def _cached_task(spec: TaskSpec, data_dir: str | None) -> Task:
  return KINDS[spec.kind](spec, data_dir)
