"""The character vocabulary of the text datasets (`pychars`): 98 ids, pure numpy.

Id 0 is UNK (any other character), then tab, newline and the 95 printable ASCII characters.
"""
from __future__ import annotations

import numpy as np

UNK_ID = 0
_VOCAB_CHARS = "\t\n" + "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = len(_VOCAB_CHARS) + 1  # 98
_UNK_CHAR = "\ufffd"
_ID_TO_CHAR = np.array([_UNK_CHAR] + list(_VOCAB_CHARS))
_ASCII_TO_ID = np.full(128, UNK_ID, dtype=np.uint8)
_ASCII_TO_ID[[ord(c) for c in _VOCAB_CHARS]] = np.arange(
    1, VOCAB_SIZE, dtype=np.uint8)


def encode_text(text: str) -> np.ndarray:
  """Maps characters to uint8 ids; non-vocabulary characters become `UNK_ID`."""
  codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
  ids = _ASCII_TO_ID[np.minimum(codes, 127)]
  return np.where(codes < 128, ids, UNK_ID).astype(np.uint8)


def decode_text(ids) -> str:
  """Inverse of `encode_text` (UNK shows as U+FFFD), for humans."""
  ids = np.asarray(ids, dtype=np.int64).ravel()
  if ids.size and (ids.min() < 0 or ids.max() >= VOCAB_SIZE):
    raise ValueError(f"Token ids must be in [0, {VOCAB_SIZE}).")
  return "".join(_ID_TO_CHAR[ids].tolist())
