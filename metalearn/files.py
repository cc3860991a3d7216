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


def run_get_config(path: str, what: str = "config file"):
  """Executes the Python config file ``path`` and returns its ``get_config()``.

  The file's folder is on ``sys.path`` while it runs, so a config may import the config it derives
  from (``from campaign_mnist import get_config as base``). ``what`` names the kind of config in
  the errors: a missing file, a directory, or a file without ``get_config()``.
  """
  import importlib.util
  import sys
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what} {path} does not exist; pass a Python file with get_config().")
  if os.path.isdir(path):
    raise ValueError(f"{what} {path} is a directory; pass a Python file with get_config().")
  spec = importlib.util.spec_from_file_location("metalearn_user_config", path)
  module = importlib.util.module_from_spec(spec)
  folder = os.path.dirname(os.path.abspath(path))
  sys.path.insert(0, folder)
  try:
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(folder)
  if not hasattr(module, "get_config"):
    raise ValueError(f"{what} {path} has no get_config() function.")
  return module.get_config()
