"""Bundled tabular datasets: scikit-learn's small classification tables, as TFDS builders.

Like the image datasets in `metalearn.data.bundled`, they are made from data shipped inside an
installed package (no network), split by the same fixed-seed permutation (15% test) and stored in
that shuffled order. Features are stored raw (float32, unscaled); the `tabular_mlp` task
standardises them with the training split's statistics.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from metalearn.data.bundled import LocalBuilder


class _TabularBuilder(LocalBuilder, skip_registration=True):
  """A classification table: `features` float32 [num_features], `label` ClassLabel."""

  INPUT = "features"
  NUM_FEATURES = 0
  NUM_CLASSES = 0
  HOMEPAGE = "https://scikit-learn.org/stable/datasets/toy_dataset.html"

  def _input_feature(self):
    return tfds.features.Tensor(shape=(self.NUM_FEATURES,), dtype=np.float32)

  def _input_value(self, x):
    return x.astype(np.float32)


def _sklearn(loader: str) -> tuple[np.ndarray, np.ndarray]:
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  table = getattr(sklearn.datasets, loader)()
  return np.asarray(table.data, np.float32), np.asarray(table.target, np.int64)


class MlBreastCancer(_TabularBuilder):
  """Wisconsin diagnostic breast cancer: 569 tumours, 30 features, benign or malignant."""

  name = "ml_breast_cancer"
  NUM_FEATURES = 30
  NUM_CLASSES = 2
  DESCRIPTION = ("scikit-learn load_breast_cancer(): 569 examples, 30 real "
                 "features (cell-nucleus measurements), 2 classes.")

  def _arrays(self):
    return _sklearn("load_breast_cancer")


class MlWine(_TabularBuilder):
  """UCI wine recognition: 178 wines, 13 chemical features, 3 cultivars."""

  name = "ml_wine"
  NUM_FEATURES = 13
  NUM_CLASSES = 3
  DESCRIPTION = ("scikit-learn load_wine(): 178 examples, 13 real features "
                 "(chemical analysis), 3 classes.")

  def _arrays(self):
    return _sklearn("load_wine")


BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "breast_cancer": MlBreastCancer,
    "wine": MlWine,
}
