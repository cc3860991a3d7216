"""Writing an evaluation's files safely: one clear error for a bad workdir, atomic writes.

Every file (``results.json``, cached runs, ``report.md``, plots) is written to a temporary file in
its directory and renamed over the target, so a write that fails -- a full disk, a permission
change, an exception while serialising -- leaves the previous file as it was and no temporary
file behind.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from typing import Callable, IO

from metalearn.files import atomic_write


class WorkdirError(OSError, ValueError):
  """A directory that cannot hold an evaluation's files (a file, not writable, full). A
  ``ValueError`` too, so the command line prints its message as an error, not a traceback."""


class WorkdirPermissionError(WorkdirError, PermissionError):
  """The directory (or a file in it) is not writable."""


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _error(path: str, e: OSError, fix: str) -> WorkdirError:
  reason = {errno.ENOSPC: "no space is left on its device", errno.EDQUOT: "the disk quota is full",
            errno.ENOTDIR: "a part of the path is a file, not a directory",
            errno.EEXIST: "it exists and is not a directory"}.get(
                e.errno, "it is not writable" if e.errno in _NOT_WRITABLE else e.strerror or str(e))
  cls = WorkdirPermissionError if e.errno in _NOT_WRITABLE else WorkdirError
  return cls(f"cannot write {path}: {reason}. {fix}")


def check_writable_dir(path: str, flag: str = "--workdir") -> None:
  """Creates ``path`` if needed and checks that a file can be written in it (by writing one).

  Raises ``WorkdirError`` (``WorkdirPermissionError`` if not writable) naming the path and the fix.
  """
  fix = f"Pass a writable directory (new or existing) as {flag}."
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(f"{flag} {path} is a file, not a directory. {fix}")
  try:
    os.makedirs(path, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=path, prefix=".write_test", suffix=".tmp")
    try:
      os.write(fd, b"0" * 4096)
      os.fsync(fd)
    finally:
      os.close(fd)
      os.remove(probe)
  except OSError as e:
    raise _error(path, e, fix) from e


def write_atomic(path: str, write: Callable[[IO[bytes]], None]) -> None:
  """Calls ``write(f)`` on a temporary file beside ``path``, then renames it to ``path``.

  On any failure the temporary file is removed and ``path`` is untouched; an ``OSError`` becomes a
  ``WorkdirError`` that names the path and the fix.
  """
  directory = os.path.dirname(os.path.abspath(path))

  def write_path(tmp):
    with open(tmp, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())

  try:
    atomic_write(path, write_path)
  except OSError as e:
    raise _error(path, e, f"Free space or make {directory} writable, or use another directory; "
                 "files written before are intact.") from e


def write_json(path: str, obj) -> None:
  """``obj`` as JSON (no NaN or infinity), atomically."""
  text = json.dumps(obj, indent=1, allow_nan=False)   # fails before anything is written
  write_atomic(path, lambda f: f.write(text.encode()))


def write_text(path: str, text: str) -> None:
  write_atomic(path, lambda f: f.write(text.encode()))
