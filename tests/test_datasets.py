"""Bundled datasets: offline TFDS preparation, ArrayRecord files, data_source reads."""
import glob
import importlib
import os
import socket
import string
import subprocess
import sys
import time

import numpy as np
import pytest

from metalearn.data import bundled, datasets, text

IMAGE_SHAPES = {"digits": (8, 8, 1), "mnist5k": (28, 28, 1),
                "mnist5k_14": (14, 14, 1), "mnist5k_8": (8, 8, 1)}
SIZES = {"digits": 1797, "mnist5k": 5000, "mnist5k_14": 5000, "mnist5k_8": 5000}


@pytest.fixture
def no_network(monkeypatch):
  """Makes any attempt to resolve or connect fail loudly."""

  def refuse(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args!r}")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket.socket, "connect_ex", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)
  monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("name", list(IMAGE_SHAPES))
def test_images_shapes_counts_and_ranges(name, data_dir):
  train = datasets.load_images(name, "train", data_dir=data_dir)
  test = datasets.load_images(name, "test", data_dir=data_dir)
  assert len(train["image"]) + len(test["image"]) == SIZES[name]
  assert len(test["image"]) == round(SIZES[name] * 0.15)
  for split in (train, test):
    assert split["image"].shape[1:] == IMAGE_SHAPES[name]
    assert split["image"].dtype == np.float32
    assert split["label"].dtype == np.int32
    assert split["num_classes"] == 10
    assert 0.0 <= split["image"].min() and split["image"].max() <= 1.0
    assert split["image"].max() > 0.9  # Scaled to [0, 1], not to 0..16/255.
    assert set(np.unique(split["label"])) == set(range(10))


@pytest.mark.parametrize("name, shape, num_classes, loader", [
    ("breast_cancer", (569, 30), 2, "load_breast_cancer"), ("wine", (178, 13), 3, "load_wine")])
def test_tabular_match_sklearn(name, shape, num_classes, loader, data_dir):
  import sklearn.datasets
  table = getattr(sklearn.datasets, loader)()
  indices = bundled.split_indices(shape[0])
  for split in ("train", "test"):
    loaded = datasets.load_tabular(name, split, data_dir=data_dir)
    assert loaded["num_classes"] == num_classes and loaded["features"].shape[1] == shape[1]
    assert loaded["features"].dtype == np.float32 and loaded["label"].dtype == np.int32
    np.testing.assert_array_equal(loaded["label"], table.target[indices[split]])
    np.testing.assert_allclose(loaded["features"], table.data[indices[split]], rtol=1e-6)
  with pytest.raises(ValueError, match="tabular"):
    datasets.load_images(name, data_dir=data_dir)


def test_split_order_is_the_fixed_permutation(data_dir):
  labels = bundled._mnist5k_28()[1]
  indices = bundled.split_indices(len(labels))
  for split in ("train", "test"):
    loaded = datasets.load_images("mnist5k", split, data_dir=data_dir)
    np.testing.assert_array_equal(loaded["label"], labels[indices[split]])


def test_prepared_files_are_array_record(data_dir):
  for name in datasets.BUNDLED:
    path = datasets.prepare(name, data_dir=data_dir)
    assert glob.glob(os.path.join(path, "*-train.array_record*"))
    assert glob.glob(os.path.join(path, "*-test.array_record*"))
    assert not glob.glob(os.path.join(path, "*tfrecord*"))
    assert datasets.prepare(name, data_dir=data_dir) == path  # Idempotent.


def test_loads_are_cached_and_deterministic(data_dir):
  first = datasets.load_images("digits", "test", data_dir=data_dir)
  again = datasets.load_images("digits", "test", data_dir=data_dir)
  assert again["image"] is first["image"]  # Served from the cache.
  assert not first["image"].flags.writeable
  datasets._cache.clear()
  reread = datasets.load_images("digits", "test", data_dir=data_dir)
  assert reread["image"] is not first["image"]
  np.testing.assert_array_equal(reread["image"], first["image"])
  np.testing.assert_array_equal(reread["label"], first["label"])


def test_digits_match_sklearn(data_dir):
  images, labels = bundled._digits_arrays()
  indices = bundled.split_indices(len(labels))["train"]
  train = datasets.load_images("digits", "train", data_dir=data_dir)
  np.testing.assert_array_equal(train["label"], labels[indices])
  np.testing.assert_allclose(train["image"], images[indices] / 255.0,
                             atol=1e-6)


def test_resized_variants_keep_intensity(data_dir):
  full = datasets.load_images("mnist5k", "train", data_dir=data_dir)
  full_means = full["image"].mean(axis=(1, 2, 3))
  for name in ("mnist5k_14", "mnist5k_8"):
    small = datasets.load_images(name, "train", data_dir=data_dir)
    np.testing.assert_array_equal(small["label"], full["label"])
    means = small["image"].mean(axis=(1, 2, 3))
    assert abs(means.mean() - full_means.mean()) < 2e-3
    assert np.abs(means - full_means).max() < 0.01  # Rounding only.


def test_area_resize_is_block_mean_for_integer_factors():
  images = np.random.default_rng(0).uniform(0, 255, (3, 28, 28))
  blocks = images.reshape(3, 14, 2, 14, 2).mean(axis=(2, 4))
  np.testing.assert_allclose(bundled.area_resize(images, 14), blocks)
  np.testing.assert_allclose(bundled.area_resize(images, 8).mean(axis=(1, 2)),
                             images.mean(axis=(1, 2)))


def test_text_corpus(data_dir):
  train = datasets.load_text("pychars", "train", data_dir=data_dir)
  test = datasets.load_text("pychars", "test", data_dir=data_dir)
  tokens = train["tokens"]
  assert train["vocab_size"] == text.VOCAB_SIZE == 98
  assert tokens.dtype == np.int32 and tokens.ndim == 1
  assert len(tokens) > 1_000_000
  assert len(tokens) % bundled.CHUNK_LENGTH == 0
  assert 0.05 < len(test["tokens"]) / (len(tokens) + len(test["tokens"])) < 0.15
  assert tokens.min() >= 0 and tokens.max() < train["vocab_size"]
  assert np.mean(tokens == text.UNK_ID) < 1e-3
  first = bundled._pychars_sources()[0]
  with open(os.path.join(bundled._stdlib_dir(), first), encoding="utf-8") as f:
    head = f.read(2000)
  assert text.decode_text(tokens[:2000]) == head


def test_decode_text_round_trips_ascii():
  sample = "".join(c for c in string.printable if c not in "\r\x0b\x0c")
  ids = text.encode_text(sample)
  assert ids.dtype == np.uint8 and not np.any(ids == text.UNK_ID)
  assert text.decode_text(ids) == sample
  assert text.decode_text(text.encode_text("é\r")) == "\ufffd\ufffd"
  with pytest.raises(ValueError):
    text.decode_text([text.VOCAB_SIZE])


def test_unknown_name_lists_bundled(data_dir):
  with pytest.raises(ValueError) as info:
    datasets.load_images("digts", data_dir=data_dir)
  for name in datasets.BUNDLED:
    assert name in str(info.value)
  with pytest.raises(ValueError, match="mnist5k_14"):
    datasets.prepare("not_a_dataset", data_dir=data_dir)


def test_bad_split_names_valid_splits(data_dir):
  with pytest.raises(ValueError, match="train, test|test, train"):
    datasets.load_images("digits", "validation", data_dir=data_dir)


def test_wrong_loader_for_kind(data_dir):
  with pytest.raises(ValueError, match="text"):
    datasets.load_images("pychars", data_dir=data_dir)
  with pytest.raises(ValueError, match="images"):
    datasets.load_text("digits", data_dir=data_dir)


def test_named_tfds_dataset_not_prepared(tmp_path, no_network):
  empty = str(tmp_path / "empty")
  start = time.perf_counter()
  with pytest.raises(datasets.DatasetNotPreparedError) as info:
    datasets.load_images("mnist", data_dir=empty)
  assert time.perf_counter() - start < 5.0
  message = str(info.value)
  assert isinstance(info.value, FileNotFoundError)
  assert "'mnist'" in message and empty in message
  assert "download_and_prepare(file_format='array_record')" in message
  assert datasets.DATA_DIR_ENV in message
  with pytest.raises(datasets.DatasetNotPreparedError):
    datasets.prepare("fashion_mnist", data_dir=empty)
  assert not os.path.exists(os.path.join(empty, "mnist"))


def test_named_tfds_path_reads_prepared_builder(data_dir, no_network):
  """Any TFDS name goes through the same data_source path once prepared."""
  bundled = datasets.load_images("digits", "test", data_dir=data_dir)
  named = datasets.load_images("ml_digits", "test", data_dir=data_dir)
  np.testing.assert_array_equal(named["image"], bundled["image"])
  np.testing.assert_array_equal(named["label"], bundled["label"])


def test_default_data_dir(monkeypatch):
  monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
  monkeypatch.delenv("METALEARN_DATA_DIR", raising=False)
  assert datasets.default_data_dir().endswith(
      os.path.join(".cache", "metalearn", "tensorflow_datasets"))
  monkeypatch.setenv("METALEARN_DATA_DIR", "/m")
  assert datasets.default_data_dir() == "/m"
  monkeypatch.setenv("TFDS_DATA_DIR", "/t")
  assert datasets.default_data_dir() == "/t"


def test_bundled_with_remote_data_dir_uses_local_cache(data_dir, monkeypatch,
                                                       no_network):
  monkeypatch.setenv("METALEARN_DATA_DIR", data_dir)
  path = datasets.prepare("digits", data_dir="gs://some-bucket/tfds")
  assert path == datasets.prepare("digits", data_dir=data_dir)


def test_interrupted_prepare_is_redone(tmp_path, no_network):
  builder_dir = tmp_path / "ml_digits"
  (builder_dir / "1.0.0").mkdir(parents=True)  # No dataset_info.json.
  (builder_dir / "1.0.0" / "junk").write_text("x")
  (builder_dir / "incomplete.ABC123_1.0.0").mkdir()  # A killed prepare.
  path = datasets.prepare("digits", data_dir=str(tmp_path))
  assert os.path.isfile(os.path.join(path, "dataset_info.json"))
  assert sorted(os.listdir(builder_dir)) == ["1.0.0"]
  assert len(datasets.load_images("digits", "test", data_dir=str(tmp_path))
             ["label"]) == 270


def test_concurrent_prepare(tmp_path):
  code = ("import sys; from metalearn.data import datasets; "
          "print(len(datasets.load_text('pychars', 'test', sys.argv[1])"
          "['tokens']))")
  procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for _ in range(2)]
  outputs = [p.communicate(timeout=120) for p in procs]
  for proc, (out, err) in zip(procs, outputs):
    assert proc.returncode == 0, err
  assert outputs[0][0] == outputs[1][0] and int(outputs[0][0]) > 0
  assert sorted(os.listdir(tmp_path / "ml_pychars")) == ["1.0.0"]


def test_prepared_by_another_process_between_construct_and_check(tmp_path, monkeypatch):
  """Another process finishes preparing after this one made its builder but before it checked:
  the builder it returns must still see the splits (the race behind a flaky
  test_concurrent_prepare: "Invalid split 'test' ...; valid splits: .")."""
  prepare_lib = importlib.import_module("metalearn.data.prepare")
  cls = prepare_lib.BUILDERS["pychars"]
  real = cls.is_prepared
  calls = []

  def is_prepared(self):
    if not calls:   # the other process finishes right now
      subprocess.run([sys.executable, "-c", "import sys; from metalearn.data import datasets; "
                      "datasets.prepare('pychars', sys.argv[1])", str(tmp_path)], check=True)
    calls.append(1)
    return real(self)

  monkeypatch.setattr(cls, "is_prepared", is_prepared)
  builder = prepare_lib.builder("pychars", str(tmp_path))
  assert "test" in builder.info.splits and "train" in builder.info.splits
  assert len(datasets.load_text("pychars", "test", str(tmp_path))["tokens"]) > 0
