"""The built-in task kinds: one builder per kind, registered in ``metalearn.tasks.KINDS``."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from metalearn.data import datasets as data_lib
from metalearn.tasks import models
from metalearn.tasks.base import Task, TaskSpec, register_kind

# -- batch samplers ---------------------------------------------------------------------------------


def gather_batch(data, key, batch_size):
  """``batch_size`` random rows (with replacement) of every array in ``data``."""
  n = data["x"].shape[0]
  idx = jax.random.randint(key, (batch_size,), 0, n)
  return {"x": data["x"][idx], "y": data["y"][idx]}


def text_batch(data, key, batch_size, seq_len):
  """Random windows of ``seq_len + 1`` tokens: inputs and next-token targets."""
  n = data["tokens"].shape[0]
  starts = jax.random.randint(key, (batch_size,), 0, n - seq_len - 1)
  window = lambda s: jax.lax.dynamic_slice(data["tokens"], (s,), (seq_len + 1,))
  seqs = jax.vmap(window)(starts)
  return {"x": seqs[:, :-1], "y": seqs[:, 1:]}


def xent_loss(model, batch):
  return optax.softmax_cross_entropy_with_integer_labels(model(batch["x"]), batch["y"]).mean()


def accuracy(model, batch):
  """Fraction of examples (or tokens) whose arg-max logit is the label."""
  return jnp.mean(jnp.argmax(model(batch["x"]), -1) == batch["y"])


def mse_loss(model, batch):
  return jnp.mean(jnp.square(model(batch["x"]) - batch["y"]))


def _call(model, batch):
  return model(batch["x"])


# -- builders ---------------------------------------------------------------------------------------


@register_kind("quadratic")
def quadratic(spec: TaskSpec, data_dir: str | None) -> Task:
  """``0.5 * sum(scale_i (x_i - target_i)^2)`` with noisy targets: gradient noise of known scale."""
  del data_dir
  rng = np.random.default_rng(spec.seed)
  scales = np.exp(rng.uniform(np.log(0.1), np.log(10.0), spec.dim)).astype(np.float32)
  center = rng.normal(size=spec.dim).astype(np.float32)
  data = {"scales": jnp.asarray(scales), "center": jnp.asarray(center)}
  bs = spec.batch_size

  class Quadratic(nnx.Module):
    def __init__(self, rngs):
      self.x = nnx.Param(jax.random.normal(rngs.params(), (spec.dim,)))

  def batch(d, key):
    return {"target": d["center"] + 0.1 * jax.random.normal(key, (bs, spec.dim)),
            "scales": d["scales"]}

  def loss(m, b):
    return 0.5 * jnp.mean(jnp.sum(b["scales"] * jnp.square(m.x[...] - b["target"]), -1))

  return Task(spec, Quadratic, data, data, batch, loss)


@register_kind("linreg")
def linreg(spec: TaskSpec, data_dir: str | None) -> Task:
  """Linear regression on synthetic data (2,048 examples, a quarter held out)."""
  del data_dir
  rng = np.random.default_rng(spec.seed)
  w = rng.normal(size=(spec.dim, 1)).astype(np.float32)
  x = rng.normal(size=(2048, spec.dim)).astype(np.float32)
  y = x @ w + 0.1 * rng.normal(size=(2048, 1)).astype(np.float32)
  train = {"x": jnp.asarray(x[:1536]), "y": jnp.asarray(y[:1536])}
  test = {"x": jnp.asarray(x[1536:]), "y": jnp.asarray(y[1536:])}
  return Task(spec, lambda rngs: nnx.Linear(spec.dim, 1, rngs=rngs), train, test,
              lambda d, key: gather_batch(d, key, spec.batch_size), mse_loss, _call)


def _image_data(name: str, data_dir: str | None):
  out = {}
  for split in ("train", "test"):
    d = data_lib.load_images(name, split=split, data_dir=data_dir)
    out[split] = {"x": jnp.asarray(d["image"], jnp.float32), "y": jnp.asarray(d["label"], jnp.int32)}
  return out, int(d["num_classes"])


def _image_task(spec, data_dir, make_model, loss):
  splits, num_classes = _image_data(spec.dataset, data_dir)
  shape = tuple(splits["train"]["x"].shape[1:])
  return Task(spec, lambda rngs: make_model(shape, num_classes, rngs), splits["train"],
              splits["test"], lambda d, key: gather_batch(d, key, spec.batch_size), loss, _call,
              accuracy if loss is xent_loss else None)


@register_kind("image_mlp")
def image_mlp(spec: TaskSpec, data_dir: str | None) -> Task:
  """An MLP classifier on flattened images."""
  return _image_task(spec, data_dir, lambda s, n, rngs: models.MLP(
      int(np.prod(s)), spec.hidden, n, spec.activation, rngs=rngs), xent_loss)


@register_kind("cnn")
def cnn(spec: TaskSpec, data_dir: str | None) -> Task:
  """A small CNN classifier (``hidden`` = channels per conv layer, default (8, 16))."""
  return _image_task(spec, data_dir, lambda s, n, rngs: models.CNN(
      s[-1], spec.hidden or (8, 16), n, spec.activation, rngs=rngs,
      kernel_size=spec.kernel_size), xent_loss)


def _reconstruction_loss(model, batch):
  x = batch["x"].reshape(batch["x"].shape[0], -1)
  return jnp.mean(jnp.square(model(batch["x"]) - x))


@register_kind("autoencoder")
def autoencoder(spec: TaskSpec, data_dir: str | None) -> Task:
  """An MLP autoencoder on flattened images (mean squared reconstruction error)."""
  return _image_task(spec, data_dir, lambda s, n, rngs: models.Autoencoder(
      int(np.prod(s)), spec.hidden or (32,), spec.activation, rngs=rngs), _reconstruction_loss)


def _text_task(spec: TaskSpec, data_dir: str | None, make_model, metric=None) -> Task:
  """A next-character task on a text corpus (default pychars); ``make_model(vocab, rngs)``."""
  name = spec.dataset or "pychars"
  tr = data_lib.load_text(name, split="train", data_dir=data_dir)
  te = data_lib.load_text(name, split="test", data_dir=data_dir)
  vocab = int(tr["vocab_size"])
  return Task(spec, lambda rngs: make_model(vocab, rngs),
              {"tokens": jnp.asarray(tr["tokens"], jnp.int32)},
              {"tokens": jnp.asarray(te["tokens"], jnp.int32)},
              lambda d, key: text_batch(d, key, spec.batch_size, spec.seq_len), xent_loss, _call,
              metric)


@register_kind("char_lm")
def char_lm(spec: TaskSpec, data_dir: str | None) -> Task:
  """A causal transformer language model over characters (default corpus: pychars)."""
  return _text_task(spec, data_dir, lambda vocab, rngs: models.CharTransformer(
      vocab, spec.seq_len, spec.d_model, spec.num_layers, spec.num_heads, rngs=rngs), accuracy)


@register_kind("cnn_norm")
def cnn_norm(spec: TaskSpec, data_dir: str | None) -> Task:
  """A CNN classifier with GroupNorm after every convolution (``hidden`` = channels, default
  (8, 16)); GroupNorm keeps no batch statistics, so the loss is a pure function of the params."""
  return _image_task(spec, data_dir, lambda s, n, rngs: models.NormCNN(
      s[-1], spec.hidden or (8, 16), n, spec.activation, rngs=rngs,
      kernel_size=spec.kernel_size), xent_loss)


@register_kind("rnn_lm")
def rnn_lm(spec: TaskSpec, data_dir: str | None) -> Task:
  """A GRU language model over characters (``num_layers`` GRUs of width ``d_model``)."""
  return _text_task(spec, data_dir, lambda vocab, rngs: models.GRULM(
      vocab, spec.d_model, spec.num_layers, rngs=rngs))


@register_kind("tabular_mlp")
def tabular_mlp(spec: TaskSpec, data_dir: str | None) -> Task:
  """An MLP classifier on a table (e.g. ``breast_cancer``, ``wine``); features are standardised
  with the training split's mean and standard deviation."""
  tr, te = (data_lib.load_tabular(spec.dataset, split=s, data_dir=data_dir)
            for s in ("train", "test"))
  mean, std = tr["features"].mean(0), tr["features"].std(0) + 1e-6
  splits = [{"x": jnp.asarray((d["features"] - mean) / std, jnp.float32),
             "y": jnp.asarray(d["label"], jnp.int32)} for d in (tr, te)]
  ctor = lambda rngs: models.MLP(int(mean.shape[0]), spec.hidden, int(tr["num_classes"]),
                                 spec.activation, rngs=rngs)
  return Task(spec, ctor, splits[0], splits[1],
              lambda d, key: gather_batch(d, key, spec.batch_size), xent_loss, _call, accuracy)
