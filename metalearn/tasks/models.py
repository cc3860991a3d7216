"""Flax NNX models used by the tasks: MLP, CNNs (plain and GroupNorm), autoencoder, character
language models (transformer, GRU)."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "tanh": jnp.tanh,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
}


def activation(name: str):
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[name]


class MLP(nnx.Module):
  """Flattens its input, then ``len(hidden)`` dense layers with ``act`` and a linear head."""

  def __init__(self, in_size: int, hidden: Sequence[int], out_size: int, act: str, *, rngs):
    sizes = [in_size, *hidden]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.head = nnx.Linear(sizes[-1], out_size, rngs=rngs)
    self.act = activation(act)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for layer in self.layers:
      x = self.act(layer(x))
    return self.head(x)


def _conv_stack(chans: Sequence[int], kernel_size: int, *, use_bias: bool, rngs) -> nnx.List:
  """Square ``kernel_size`` convolutions chans[0] -> chans[1] -> ...; stride 2 after the first."""
  return nnx.List([
      nnx.Conv(a, b, kernel_size=(kernel_size, kernel_size),
               strides=(1, 1) if i == 0 else (2, 2), padding="SAME", use_bias=use_bias, rngs=rngs)
      for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))])


class CNN(nnx.Module):
  """Square convolutions of ``kernel_size`` (default 3; stride 2 after the first) with ``act``,
  global mean pool, linear head."""

  def __init__(self, in_channels: int, channels: Sequence[int], out_size: int, act: str, *, rngs,
               kernel_size: int = 3):
    chans = [in_channels, *channels]
    self.convs = _conv_stack(chans, kernel_size, use_bias=True, rngs=rngs)
    self.head = nnx.Linear(chans[-1], out_size, rngs=rngs)
    self.act = activation(act)

  def __call__(self, x):
    for conv in self.convs:
      x = self.act(conv(x))
    return self.head(x.mean(axis=(1, 2)))


class Autoencoder(nnx.Module):
  """MLP encoder to a bottleneck and MLP decoder back to the (flattened) input."""

  def __init__(self, in_size: int, hidden: Sequence[int], act: str, *, rngs):
    enc = [in_size, *hidden]
    dec = [*reversed(hidden), in_size]
    self.enc = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(enc[:-1], enc[1:])])
    self.dec = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dec[:-1], dec[1:])])
    self.act = activation(act)

  def __call__(self, x):
    h = x.reshape(x.shape[0], -1)
    for layer in self.enc:
      h = self.act(layer(h))
    for i, layer in enumerate(self.dec):
      h = layer(h)
      if i < len(self.dec) - 1:
        h = self.act(h)
    return h


class TransformerBlock(nnx.Module):

  def __init__(self, d_model: int, num_heads: int, *, rngs):
    self.ln1 = nnx.LayerNorm(d_model, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=num_heads, in_features=d_model, decode=False,
                                       rngs=rngs)
    self.ln2 = nnx.LayerNorm(d_model, rngs=rngs)
    self.up = nnx.Linear(d_model, 4 * d_model, rngs=rngs)
    self.down = nnx.Linear(4 * d_model, d_model, rngs=rngs)

  def __call__(self, x, mask):
    x = x + self.attn(self.ln1(x), mask=mask)
    return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))


class CharTransformer(nnx.Module):
  """A small pre-LayerNorm causal transformer over character ids."""

  def __init__(self, vocab_size: int, seq_len: int, d_model: int, num_layers: int, num_heads: int,
               *, rngs):
    self.embed = nnx.Embed(vocab_size, d_model, rngs=rngs)
    self.pos = nnx.Param(jax.random.normal(rngs.params(), (seq_len, d_model)) * 0.02)
    self.blocks = nnx.List([TransformerBlock(d_model, num_heads, rngs=rngs)
                            for _ in range(num_layers)])
    self.ln = nnx.LayerNorm(d_model, rngs=rngs)
    self.head = nnx.Linear(d_model, vocab_size, rngs=rngs)

  def __call__(self, tokens):
    t = tokens.shape[-1]
    x = self.embed(tokens) + self.pos[...][:t]
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.head(self.ln(x))


def _groups(channels: int, max_groups: int = 4) -> int:
  """The most groups (<= ``max_groups``) that divide ``channels``."""
  return max(g for g in range(1, max_groups + 1) if channels % g == 0)


class NormCNN(nnx.Module):
  """``CNN`` with a GroupNorm after every convolution.

  GroupNorm normalises each example over groups of channels, so it keeps no batch statistics:
  the model's only state is its ``nnx.Param`` leaves and the loss stays a pure function of them
  (BatchNorm's running averages would be state outside the params that inner training updates).
  """

  def __init__(self, in_channels: int, channels: Sequence[int], out_size: int, act: str, *, rngs,
               kernel_size: int = 3):
    chans = [in_channels, *channels]
    self.convs = _conv_stack(chans, kernel_size, use_bias=False, rngs=rngs)
    self.norms = nnx.List([nnx.GroupNorm(c, num_groups=_groups(c), rngs=rngs) for c in channels])
    self.head = nnx.Linear(chans[-1], out_size, rngs=rngs)
    self.act = activation(act)

  def __call__(self, x):
    for conv, norm in zip(self.convs, self.norms):
      x = self.act(norm(conv(x)))
    return self.head(x.mean(axis=(1, 2)))


class GRULM(nnx.Module):
  """A character language model: embedding, ``num_layers`` stacked GRUs, LayerNorm, linear head.

  The recurrence is a ``lax.scan`` over time of the GRU cell's pure function (split into graph and
  params), so the model holds nothing but ``nnx.Param`` leaves.
  """

  def __init__(self, vocab_size: int, width: int, num_layers: int, *, rngs):
    self.embed = nnx.Embed(vocab_size, width, rngs=rngs)
    self.cells = nnx.List([nnx.GRUCell(width, width, rngs=rngs) for _ in range(num_layers)])
    self.ln = nnx.LayerNorm(width, rngs=rngs)
    self.head = nnx.Linear(width, vocab_size, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens)                              # [batch, time, width]
    for cell in self.cells:
      graphdef, params = nnx.split(cell)

      def step(h, x_t, graphdef=graphdef, params=params):
        h, y = nnx.merge(graphdef, params)(h, x_t)
        return h, y

      h0 = jnp.zeros((x.shape[0], x.shape[-1]), x.dtype)
      _, ys = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
      x = x + jnp.swapaxes(ys, 0, 1)                    # residual across the stack
    return self.head(self.ln(x))
