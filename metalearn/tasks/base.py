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
import optax
from flax import nnx

from metalearn.tasks import models

KINDS = ("quadratic", "linreg", "image_mlp", "cnn", "autoencoder", "char_lm")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """A concrete task. Fields unused by a ``kind`` keep their defaults."""

  kind: str
  dataset: str = ""
  hidden: tuple[int, ...] = ()
  activation: str = "relu"
  batch_size: int = 128
  dim: int = 0            # quadratic / linreg dimension
  seq_len: int = 0        # char_lm
  d_model: int = 0
  num_layers: int = 0
  num_heads: int = 0
  seed: int = 0           # synthetic data (quadratic, linreg)

  def __post_init__(self):
    object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
    if self.kind not in KINDS:
      raise ValueError(f"unknown task kind {self.kind!r}; choose one of {list(KINDS)}.")
    if any(h < 1 for h in self.hidden):
      raise ValueError(f"hidden widths must be >= 1, got {self.hidden}.")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
    if self.kind in ("quadratic", "linreg") and self.dim < 1:
      raise ValueError(f"{self.kind} task needs dim >= 1, got {self.dim}.")
    if self.kind == "char_lm" and min(self.seq_len, self.d_model, self.num_layers,
                                      self.num_heads) < 1:
      raise ValueError("char_lm task needs seq_len, d_model, num_layers and num_heads >= 1.")
    if self.kind in ("image_mlp", "cnn", "autoencoder") and not self.dataset:
      raise ValueError(f"{self.kind} task needs a dataset name.")
    models.activation(self.activation)  # validates the name

  @property
  def name(self) -> str:
    if self.kind == "quadratic":
      return f"quadratic_d{self.dim}_s{self.seed}"
    if self.kind == "linreg":
      return f"linreg_d{self.dim}_s{self.seed}"
    if self.kind == "char_lm":
      return (f"char_lm_{self.dataset or 'pychars'}_L{self.num_layers}_d{self.d_model}"
              f"_T{self.seq_len}_b{self.batch_size}")
    h = "x".join(map(str, self.hidden)) or "linear"
    return f"{self.kind}_{self.dataset}_{h}_{self.activation}_b{self.batch_size}"

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["hidden"] = list(self.hidden)
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
  loss_from_output: Callable[[Any, Any], jax.Array]
  apply: Callable[[nnx.Module, Any], Any]

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
    return self.loss_from_output(self.apply(self.model(params), batch), batch)

  def sample_batch(self, key: jax.Array, split: str = "train"):
    return self.batch(self.data if split == "train" else self.test_data, key)

  def eval_loss(self, params, key: jax.Array, num_batches: int = 4, split: str = "test"):
    """Mean loss over ``num_batches`` random batches of a split (default: held out)."""
    data = self.data if split == "train" else self.test_data
    keys = jax.random.split(key, num_batches)
    return jnp.mean(jax.vmap(lambda k: self.loss(params, self.batch(data, k)))(keys))

  def num_params(self) -> int:
    shapes = jax.eval_shape(self.init, jax.random.key(0))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


# -- batch samplers ---------------------------------------------------------------------------------


def _gather_batch(data, key, batch_size):
  n = data["x"].shape[0]
  idx = jax.random.randint(key, (batch_size,), 0, n)
  return {"x": data["x"][idx], "y": data["y"][idx]}


def _text_batch(data, key, batch_size, seq_len):
  n = data["tokens"].shape[0]
  starts = jax.random.randint(key, (batch_size,), 0, n - seq_len - 1)
  window = lambda s: jax.lax.dynamic_slice(data["tokens"], (s,), (seq_len + 1,))
  seqs = jax.vmap(window)(starts)
  return {"x": seqs[:, :-1], "y": seqs[:, 1:]}


def _xent(logits, batch):
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def _mse(out, batch):
  return jnp.mean(jnp.square(out - batch["y"]))


# -- task builders ----------------------------------------------------------------------------------


def _image_data(name: str, data_dir: str | None):
  from metalearn.tasks import datasets
  out = {}
  for split in ("train", "test"):
    d = datasets.load_images(name, split=split, data_dir=data_dir)
    out[split] = {"x": jnp.asarray(d["image"], jnp.float32), "y": jnp.asarray(d["label"], jnp.int32)}
  return out, int(d["num_classes"])


@functools.lru_cache(maxsize=64)
def _cached_task(spec: TaskSpec, data_dir: str | None) -> Task:
  k = spec.kind
  bs = spec.batch_size
  if k == "quadratic":
    rng = np.random.default_rng(spec.seed)
    scales = np.exp(rng.uniform(np.log(0.1), np.log(10.0), spec.dim)).astype(np.float32)
    center = rng.normal(size=spec.dim).astype(np.float32)
    data = {"scales": jnp.asarray(scales), "center": jnp.asarray(center)}

    class Quadratic(nnx.Module):
      def __init__(self, rngs):
        self.x = nnx.Param(jax.random.normal(rngs.params(), (spec.dim,)))

    def batch(d, key):  # noisy targets: gradient noise with a known scale
      return {"target": d["center"] + 0.1 * jax.random.normal(key, (bs, spec.dim)),
              "scales": d["scales"]}

    return Task(spec, lambda rngs: Quadratic(rngs), data, data, batch,
                lambda out, b: out, lambda m, b: 0.5 * jnp.mean(
                    jnp.sum(b["scales"] * jnp.square(m.x[...] - b["target"]), -1)))
  if k == "linreg":
    rng = np.random.default_rng(spec.seed)
    w = rng.normal(size=(spec.dim, 1)).astype(np.float32)
    x = rng.normal(size=(2048, spec.dim)).astype(np.float32)
    y = x @ w + 0.1 * rng.normal(size=(2048, 1)).astype(np.float32)
    data = {"x": jnp.asarray(x[:1536]), "y": jnp.asarray(y[:1536])}
    test = {"x": jnp.asarray(x[1536:]), "y": jnp.asarray(y[1536:])}
    return Task(spec, lambda rngs: nnx.Linear(spec.dim, 1, rngs=rngs), data, test,
                lambda d, key: _gather_batch(d, key, bs), _mse, lambda m, b: m(b["x"]))
  if k in ("image_mlp", "cnn", "autoencoder"):
    splits, num_classes = _image_data(spec.dataset, data_dir)
    x = splits["train"]["x"]
    h, w, c = x.shape[1:]
    if k == "image_mlp":
      ctor = lambda rngs: models.MLP(h * w * c, spec.hidden, num_classes, spec.activation, rngs=rngs)
      lf, ap = _xent, lambda m, b: m(b["x"])
    elif k == "cnn":
      chans = spec.hidden or (8, 16)
      ctor = lambda rngs: models.CNN(c, chans, num_classes, spec.activation, rngs=rngs)
      lf, ap = _xent, lambda m, b: m(b["x"])
    else:
      hid = spec.hidden or (32,)
      ctor = lambda rngs: models.Autoencoder(h * w * c, hid, spec.activation, rngs=rngs)
      lf = lambda out, b: jnp.mean(jnp.square(out - b["x"].reshape(b["x"].shape[0], -1)))
      ap = lambda m, b: m(b["x"])
    return Task(spec, ctor, splits["train"], splits["test"],
                lambda d, key: _gather_batch(d, key, bs), lf, ap)
  if k == "char_lm":
    from metalearn.tasks import datasets
    name = spec.dataset or "pychars"
    tr = datasets.load_text(name, split="train", data_dir=data_dir)
    te = datasets.load_text(name, split="test", data_dir=data_dir)
    vocab = int(tr["vocab_size"])
    ctor = lambda rngs: models.CharTransformer(vocab, spec.seq_len, spec.d_model, spec.num_layers,
                                               spec.num_heads, rngs=rngs)
    return Task(spec, ctor, {"tokens": jnp.asarray(tr["tokens"], jnp.int32)},
                {"tokens": jnp.asarray(te["tokens"], jnp.int32)},
                lambda d, key: _text_batch(d, key, bs, spec.seq_len), _xent,
                lambda m, b: m(b["x"]))
  raise AssertionError(k)


def make_task(spec: TaskSpec | dict | str, data_dir: str | None = None) -> Task:
  """Builds (and caches) the task for a spec, a spec dict, or a JSON string of one."""
  if isinstance(spec, str):
    spec = json.loads(spec)
  if isinstance(spec, dict):
    spec = TaskSpec.from_dict(spec)
  if not isinstance(spec, TaskSpec):
    raise TypeError(f"make_task takes a TaskSpec, dict or JSON string, got {type(spec).__name__}.")
  return _cached_task(spec, data_dir)
