"""Tasks as pure functions, their NNX models, task families, and task-spec errors."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from metalearn import tasks
from metalearn import data
from metalearn.tasks import TaskSpec, make_task

SMALL_SPECS = {
    "quadratic": TaskSpec("quadratic", dim=4, batch_size=8, seed=3),
    "linreg": TaskSpec("linreg", dim=4, batch_size=8, seed=3),
    "image_mlp": TaskSpec("image_mlp", dataset="digits", hidden=(16,), activation="tanh",
                          batch_size=8),
    "cnn": TaskSpec("cnn", dataset="digits", hidden=(4,), batch_size=8),
    "autoencoder": TaskSpec("autoencoder", dataset="digits", hidden=(8,), batch_size=8),
    "char_lm": TaskSpec("char_lm", dataset="pychars", seq_len=16, d_model=16, num_layers=1,
                        num_heads=2, batch_size=4),
    "cnn_norm": TaskSpec("cnn_norm", dataset="digits", hidden=(4, 8), batch_size=8),
    "rnn_lm": TaskSpec("rnn_lm", dataset="pychars", seq_len=16, d_model=16, num_layers=2,
                       batch_size=4),
    "tabular_mlp": TaskSpec("tabular_mlp", dataset="wine", hidden=(16,), batch_size=8),
}
NUM_CLASSES = {"image_mlp": 10, "cnn": 10, "char_lm": data.VOCAB_SIZE, "cnn_norm": 10,
               "rnn_lm": data.VOCAB_SIZE, "tabular_mlp": 3}
BATCH_SHAPES = {
    "quadratic": {"target": (8, 4), "scales": (4,)},
    "linreg": {"x": (8, 4), "y": (8, 1)},
    "image_mlp": {"x": (8, 8, 8, 1), "y": (8,)},
    "cnn": {"x": (8, 8, 8, 1), "y": (8,)},
    "autoencoder": {"x": (8, 8, 8, 1), "y": (8,)},
    "char_lm": {"x": (4, 16), "y": (4, 16)},
    "cnn_norm": {"x": (8, 8, 8, 1), "y": (8,)},
    "rnn_lm": {"x": (4, 16), "y": (4, 16)},
    "tabular_mlp": {"x": (8, 13), "y": (8,)},
}


def test_every_kind_has_a_small_spec():
  assert set(SMALL_SPECS) == set(tasks.KINDS)


@pytest.mark.parametrize("kind", tasks.KINDS)
def test_convolution_kinds_are_known_to_the_grid_runner(kind, data_dir):
  # train_grid runs convolutional grids one run after another on CPU (batched convolutions are
  # much slower there) and costs them per image position; a conv kind missing from CONV_KINDS was
  # vmapped and compiled without optimizations: one 300-step GroupNorm-CNN grid took > 30 min.
  from metalearn.tasks import training
  task = make_task(SMALL_SPECS[kind], data_dir=data_dir)
  has_conv = any(isinstance(m, nnx.Conv) for _, m in nnx.iter_graph(task.model(task.init(
      jax.random.key(0)))))
  assert has_conv == (kind in training.CONV_KINDS)


@pytest.mark.parametrize("kind", tasks.KINDS)
def test_task_functions_are_pure_jittable_and_vmappable(kind, data_dir):
  task = make_task(SMALL_SPECS[kind], data_dir=data_dir)
  assert isinstance(task, tasks.Task) and task.name == SMALL_SPECS[kind].name

  def init_batch_loss(key):
    params = task.init(key)
    batch = task.batch(task.data, key)
    return params, batch, task.loss(params, batch)

  # Keys 0 and 1 are equal: a pure function gives equal rows; key 2 differs.
  k0, k2 = jax.random.split(jax.random.key(7))
  keys = jnp.stack([k0, k0, k2])
  params, batch, losses = jax.jit(jax.vmap(init_batch_loss))(keys)

  assert losses.shape == (3,) and bool(jnp.all(jnp.isfinite(losses)))
  assert jax.tree.map(lambda x: x.shape[1:], batch) == BATCH_SHAPES[kind]
  for leaf in jax.tree.leaves(params):
    assert leaf.dtype == jnp.float32
    np.testing.assert_array_equal(leaf[0], leaf[1])
  for leaf in jax.tree.leaves(batch):
    np.testing.assert_array_equal(leaf[0], leaf[1])
  assert float(losses[0]) == float(losses[1])
  assert any(not np.array_equal(p[0], p[2]) for p in jax.tree.leaves(params))
  assert float(losses[0]) != float(losses[2])
  assert sum(int(np.prod(p.shape[1:])) for p in jax.tree.leaves(params)) == task.num_params()

  if kind in NUM_CLASSES:  # classifiers start near chance: loss ~ log(num_classes)
    chance = math.log(NUM_CLASSES[kind])
    assert abs(float(jnp.mean(losses)) - chance) < 0.3 * chance, (float(jnp.mean(losses)), chance)

  # task.model(params) is the user's NNX model: its output gives the task's loss.
  row = lambda tree: jax.tree.map(lambda x: x[0], tree)
  model = task.model(row(params))
  assert isinstance(model, nnx.Module)
  b0 = row(batch)
  np.testing.assert_allclose(task.loss_fn(model, b0), losses[0], rtol=1e-5)
  if kind != "quadratic":  # every other model is called on the batch's inputs
    np.testing.assert_allclose(model(b0["x"]), task.apply(model, b0), rtol=1e-6)
  # The model's Params are exactly the task's params.
  same = jax.tree.map(np.array_equal, nnx.state(model, nnx.Param), row(params))
  assert all(jax.tree.leaves(same))


def test_task_data_and_held_out_split(data_dir):
  task = make_task(SMALL_SPECS["image_mlp"], data_dir=data_dir)
  assert task.data["x"].shape == (1527, 8, 8, 1) and task.test_data["x"].shape == (270, 8, 8, 1)
  assert task.data["y"].dtype == jnp.int32
  assert 0.0 <= float(task.data["x"].min()) and float(task.data["x"].max()) <= 1.0
  # The dataset is an argument of batch (not baked into the compiled program).
  batch = jax.jit(task.batch)(task.test_data, jax.random.key(0))
  assert batch["x"].shape == (8, 8, 8, 1)
  assert bool(jnp.all(jnp.isin(batch["y"], task.test_data["y"])))


def _random_params(task, seed=0):
  """Parameters drawn with numpy: compiling ``task.init`` costs more than these tests."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(s.dtype),
                      jax.eval_shape(task.init, jax.random.key(0)))


@pytest.mark.parametrize("kind", ["cnn_norm", "rnn_lm"])
def test_normalised_and_recurrent_models_hold_only_params(kind, data_dir):
  """No batch statistics or RNG state: the loss is a pure function of the params (the inner loop
  differentiates it over nnx.Param leaves only), and a batch's examples do not interact."""
  task = make_task(SMALL_SPECS[kind], data_dir=data_dir)
  abstract = nnx.eval_shape(lambda: task.make_model(nnx.Rngs(0)))
  assert set(jax.tree.leaves(jax.tree.map(type, nnx.state(abstract), is_leaf=lambda x: isinstance(
      x, nnx.Variable)))) == {nnx.Param}
  params = _random_params(task)
  x = jax.jit(task.sample_batch)(jax.random.key(1))["x"]
  apply = jax.jit(lambda x: task.model(params)(x))
  whole, alone = apply(x), apply(x[:1])
  np.testing.assert_allclose(whole[:1], alone, rtol=2e-4, atol=1e-5)
  if kind == "rnn_lm":   # causal: changing token 10 changes no earlier prediction
    changed = apply(x.at[:, 10].set((x[:, 10] + 1) % data.VOCAB_SIZE))
    np.testing.assert_allclose(whole[:, :10], changed[:, :10], rtol=1e-5, atol=1e-6)
    assert not np.allclose(whole[:, 10:], changed[:, 10:])


def test_tabular_features_are_standardised(data_dir):
  task = make_task(SMALL_SPECS["tabular_mlp"], data_dir=data_dir)
  x = np.asarray(task.data["x"])
  assert x.shape == (151, 13) and task.test_data["x"].shape == (27, 13)
  np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(x.std(0), 1.0, atol=1e-3)
  raw = data.load_tabular("wine", "train", data_dir=data_dir)["features"]
  assert raw[:, 12].max() > 1000  # proline, unscaled in the dataset


def test_make_task_is_cached_and_takes_dicts_and_json(data_dir):
  spec = SMALL_SPECS["linreg"]
  task = make_task(spec, data_dir=data_dir)
  assert make_task(spec.to_dict(), data_dir=data_dir) is task
  assert make_task(json.dumps(spec.to_dict()), data_dir=data_dir) is task
  with pytest.raises(TypeError, match="TaskSpec, dict or JSON"):
    make_task(3)


def test_synthetic_tasks_depend_on_their_seed():
  a = make_task(TaskSpec("linreg", dim=4, seed=1))
  b = make_task(TaskSpec("linreg", dim=4, seed=2))
  assert not np.array_equal(a.data["x"], b.data["x"])
  again = make_task(TaskSpec("linreg", dim=4, seed=1, batch_size=16))  # another spec, same data
  np.testing.assert_array_equal(a.data["y"], again.data["y"])


# -- specs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", tasks.KINDS)
def test_spec_json_round_trip(kind):
  spec = SMALL_SPECS[kind]
  d = json.loads(json.dumps(spec.to_dict()))
  back = TaskSpec.from_dict(d)
  assert back == spec and hash(back) == hash(spec) and back.name == spec.name
  assert isinstance(back.hidden, tuple)


def test_spec_hidden_is_normalised():
  spec = TaskSpec("image_mlp", dataset="digits", hidden=[32, np.int64(16)])
  assert spec.hidden == (32, 16) and all(type(h) is int for h in spec.hidden)
  hash(spec)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="mlp"), "unknown task kind 'mlp'"),
    (dict(kind="image_mlp"), "needs a dataset name"),
    (dict(kind="cnn", dataset=""), "needs a dataset name"),
    (dict(kind="image_mlp", dataset="digits", activation="swishy"), "unknown activation 'swishy'"),
    (dict(kind="image_mlp", dataset="digits", batch_size=0), "batch_size must be >= 1"),
    (dict(kind="quadratic", dim=0), "needs dim >= 1"),
    (dict(kind="linreg"), "needs dim >= 1"),
    (dict(kind="char_lm", seq_len=16, d_model=16, num_layers=1), "num_heads"),
    (dict(kind="rnn_lm", seq_len=16, d_model=16), "num_layers"),
    (dict(kind="tabular_mlp", hidden=(8,)), "needs a dataset name"),
    (dict(kind="cnn_norm"), "needs a dataset name"),
])
def test_invalid_specs(kwargs, match):
  with pytest.raises(ValueError, match=match):
    TaskSpec(**kwargs)


@pytest.mark.parametrize("hidden", [(0,), (16, -3)])
def test_non_positive_hidden_widths(hidden):
  with pytest.raises(ValueError, match="hidden"):
    TaskSpec("image_mlp", dataset="digits", hidden=hidden)


def test_unknown_spec_field():
  with pytest.raises(ValueError, match="unknown TaskSpec fields.*widht"):
    TaskSpec.from_dict({"kind": "image_mlp", "dataset": "digits", "widht": 3})
  with pytest.raises(ValueError, match="unknown TaskSpec fields"):
    make_task('{"kind": "quadratic", "dim": 4, "lr": 1}')


def test_unknown_dataset_names_the_bundled_ones(data_dir):
  with pytest.raises(ValueError) as info:
    make_task(TaskSpec("image_mlp", dataset="digts", hidden=(8,)), data_dir=data_dir)
  for name in data.BUNDLED:
    assert name in str(info.value)


def test_named_tfds_dataset_not_prepared(tmp_path):
  empty = str(tmp_path / "empty")
  with pytest.raises(data.DatasetNotPreparedError) as info:
    make_task(TaskSpec("image_mlp", dataset="mnist", hidden=(8,)), data_dir=empty)
  message = str(info.value)
  assert isinstance(info.value, FileNotFoundError)
  assert "'mnist'" in message and empty in message and "never downloads" in message
  assert "download_and_prepare(file_format='array_record')" in message


def test_text_dataset_for_an_image_task(data_dir):
  with pytest.raises(ValueError, match="text"):
    make_task(TaskSpec("image_mlp", dataset="pychars", hidden=(8,)), data_dir=data_dir)


# -- families --------------------------------------------------------------------------------------


@pytest.mark.parametrize("family_name", sorted(tasks.FAMILIES))
def test_families_sample_deterministically(family_name):
  family = tasks.make_family(family_name)
  key = jax.random.key(11)
  spec = family.sample(key)
  assert isinstance(spec, TaskSpec)
  # Same key -> same spec, from a fresh family object and a freshly made key.
  assert tasks.make_family(family_name).sample(jax.random.key(11)) == spec
  many = family.sample_many(jax.random.key(5), 12)
  assert many == tasks.make_family(family_name).sample_many(jax.random.key(5), 12)
  # Different keys -> (usually) different specs.
  assert len(set(many)) >= 3
  # Family configs and the specs they sample are JSON-able.
  json.dumps(family.to_dict())
  for s in many:
    assert TaskSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def _sampled(family, n=40):
  return family.sample_many(jax.random.key(0), n)


def test_image_mlp_family_ranges():
  family = tasks.ImageMLPFamily(datasets=("digits",), widths=(16, 64), depths=(1, 3),
                                activations=("relu", "gelu"), batch_sizes=(32,))
  specs = _sampled(family)
  for s in specs:
    assert s.kind == "image_mlp" and s.dataset == "digits" and s.batch_size == 32
    assert 1 <= len(s.hidden) <= 3 and len(set(s.hidden)) == 1
    assert 16 <= s.hidden[0] <= 64
    assert s.activation in ("relu", "gelu")
  assert {len(s.hidden) for s in specs} == {1, 2, 3}  # depths are inclusive


def test_cnn_family_ranges():
  family = tasks.CNNFamily(datasets=("digits", "mnist5k_14"), channels=(4, 8), depths=(1, 3))
  for s in _sampled(family):
    assert s.kind == "cnn" and s.dataset in ("digits", "mnist5k_14")
    assert 1 <= len(s.hidden) <= 3 and 4 <= s.hidden[0] <= 8
    assert list(s.hidden) == [s.hidden[0] * 2**i for i in range(len(s.hidden))]


def test_char_lm_family_ranges():
  for s in _sampled(tasks.CharLMFamily()):
    assert s.kind == "char_lm" and s.dataset == "pychars"
    assert s.d_model in (32, 64) and s.num_heads == s.d_model // 16
    assert 1 <= s.num_layers <= 2 and s.seq_len in (32, 64) and s.batch_size in (16, 32)


def test_synthetic_family_ranges():
  for s in _sampled(tasks.QuadraticFamily(dims=(4, 16), batch_size=4)):
    assert s.kind == "quadratic" and 4 <= s.dim <= 16 and s.batch_size == 4
  specs = _sampled(tasks.LinearRegressionFamily(dims=(2, 8)))
  assert all(s.kind == "linreg" and 2 <= s.dim <= 8 for s in specs)
  assert len({s.seed for s in specs}) == len(specs)  # fresh synthetic data per sample


def test_sampled_spec_builds(data_dir):
  spec = tasks.ImageMLPFamily(datasets=("digits",), widths=(8, 16)).sample(jax.random.key(1))
  task = make_task(spec, data_dir=data_dir)
  assert task.num_params() > 0


def test_unknown_family():
  with pytest.raises(ValueError, match="unknown task family 'mlp'.*image_mlp"):
    tasks.make_family("mlp")


def test_custom_task(data_dir):
  """A user-defined Task (as in docs/tasks.md) works like a built-in one."""

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.w = nnx.Param(jax.random.normal(rngs.params(), (3,)))

    def __call__(self, x):
      return x @ self.w[...]

  x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
  data = {"x": jnp.asarray(x), "y": jnp.asarray(x @ np.array([1.0, -2.0, 0.5], np.float32))}
  task = tasks.Task(
      spec=TaskSpec("linreg", dim=3), make_model=Model, data=data, test_data=data,
      batch=lambda d, key: jax.tree.map(lambda a: a[jax.random.randint(key, (16,), 0, 64)], d),
      loss_fn=lambda m, b: jnp.mean(jnp.square(m(b["x"]) - b["y"])))
  params = task.init(jax.random.key(0))
  loss = jax.jit(task.loss)(params, task.sample_batch(jax.random.key(1)))
  assert loss.shape == () and float(loss) > 0
  assert task.num_params() == 3
