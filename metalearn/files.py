"""Writing files so that a reader never sees half of one: the one atomic-write helper.

    atomic_write("runs/x/results.json", json.dumps(results))
    atomic_write("theta.safetensors", lambda tmp: save_file(arrays, tmp))   # a writer of a path

Local files are written to a temporary file in the same directory and renamed over the target
(``os.replace`` is atomic on POSIX); if writing fails, the target is left as it was and the
temporary file is removed. Remote paths (``gs://``) are written whole through a local temporary
file and one upload, which object stores make atomic.
"""
from __future__ import annotations

import os
import tempfile
from typing import Callable

from etils import epath


def atomic_write(path, content: str | bytes | Callable[[str], None]) -> None:
  """Writes ``content`` (text, bytes, or a function that writes a given path) to ``path``."""
  path = str(path)
  remote = "://" in path
  folder = tempfile.gettempdir() if remote else os.path.dirname(os.path.abspath(path))
  if not remote and not os.path.isdir(folder):
    raise NotADirectoryError(f"cannot write {path}: {folder} is not a directory.")
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  os.close(fd)
  try:
    if callable(content):
      content(tmp)
    else:
      with open(tmp, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)
    os.chmod(tmp, 0o644)  # mkstemp makes files private; these are ordinary data files
    if remote:
      epath.Path(tmp).copy(epath.Path(path), overwrite=True)
    else:
      os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
