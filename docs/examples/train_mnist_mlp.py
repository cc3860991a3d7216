"""Trains a small flax NNX MLP on the bundled MNIST subset with a learned optimizer.

    python docs/examples/train_mnist_mlp.py              # 500 steps, well under a minute on CPU
    python docs/examples/train_mnist_mlp.py --steps 50

Uses the shipped ``pretrained("default")`` rule when the package has one, else ``MLPLOpt`` at its
initial meta-parameters (which trains like Adam at lr 1e-3). The training loop is plain flax NNX:
the learned rule is just an optax transformation.
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import metalearn as ml
from metalearn import data as datasets


class MLP(nnx.Module):

  def __init__(self, in_size: int, hidden: int, num_classes: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(in_size, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    return self.out(nnx.relu(self.hidden(x)))


def make_optimizer(num_steps: int):
  """The learned rule as an optax transformation, told how long training lasts."""
  if ml.pretrained_names():
    return ml.pretrained("default", num_steps=num_steps), "pretrained('default')"
  lopt = ml.optimizers.MLPLOpt()
  theta = lopt.init_meta_params(jax.random.key(0))
  return lopt.as_optax(theta, num_steps=num_steps), "MLPLOpt at its initial meta-parameters"


def loss_fn(model, x, y):
  logits = model(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@nnx.jit
def train_step(model, optimizer, x, y):
  (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
  optimizer.update(model, grads, loss=loss)  # `loss=` is optional; some rules read it
  return loss


@nnx.jit
def evaluate(model, x, y):
  loss, logits = loss_fn(model, x, y)
  return loss, jnp.mean(jnp.argmax(logits, -1) == y)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=500)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--hidden", type=int, default=128)
  parser.add_argument("--dataset", default="mnist5k", help="a bundled image dataset")
  parser.add_argument("--data-dir", default=None, help="TFDS data dir (default: $TFDS_DATA_DIR)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  train = datasets.load_images(args.dataset, "train", data_dir=args.data_dir)
  test = datasets.load_images(args.dataset, "test", data_dir=args.data_dir)
  x_train, y_train = jnp.asarray(train["image"]), jnp.asarray(train["label"])
  x_test, y_test = jnp.asarray(test["image"]), jnp.asarray(test["label"])

  model = MLP(int(np.prod(x_train.shape[1:])), args.hidden, train["num_classes"],
              rngs=nnx.Rngs(args.seed))
  tx, description = make_optimizer(args.steps)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  print(f"training on {args.dataset} ({len(x_train)} images) with {description}")

  rng = np.random.default_rng(args.seed)
  log_every = max(1, args.steps // 10)
  start = time.perf_counter()
  for step in range(1, args.steps + 1):
    idx = rng.integers(0, len(x_train), args.batch_size)
    loss = train_step(model, optimizer, x_train[idx], y_train[idx])
    if step == 1 or step % log_every == 0 or step == args.steps:
      print(f"step {step:5d}  train loss {float(loss):.4f}")
  test_loss, test_acc = evaluate(model, x_test, y_test)
  print(f"test loss {float(test_loss):.4f}  test accuracy {float(test_acc):.3f}  "
        f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
  main()
