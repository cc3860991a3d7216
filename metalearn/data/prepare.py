"""Data dirs and the preparation of datasets: bundled ones built offline, TFDS ones checked.

A bundled dataset (`BUNDLED`) is written into the data dir as ArrayRecord files on first use,
under a file lock, so a fresh machine needs no network; any other name must be a TFDS dataset
already prepared there, else `DatasetNotPreparedError` says how to prepare it.
`metalearn.data.datasets` reads them.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from typing import Iterator

import tensorflow_datasets as tfds

from metalearn.data import bundled, tabular

DATA_DIR_ENV = "TFDS_DATA_DIR"
METALEARN_DATA_DIR_ENV = "METALEARN_DATA_DIR"
BUILDERS = {**bundled.BUILDERS, **tabular.BUILDERS}
BUNDLED: tuple[str, ...] = tuple(BUILDERS)

_log = logging.getLogger(__name__)
lock = threading.RLock()  # serialises preparation and the readers' cache in this process


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS dataset is not prepared (as ArrayRecord) in the data dir."""


def default_data_dir() -> str:
  """$TFDS_DATA_DIR, else $METALEARN_DATA_DIR, else a per-user cache dir.

  Bundled datasets given a remote (e.g. gs://) data dir are kept in
  $METALEARN_DATA_DIR or the per-user cache dir instead.
  """
  return os.environ.get(DATA_DIR_ENV) or _local_cache_dir()


def _local_cache_dir() -> str:
  """$METALEARN_DATA_DIR, else ~/.cache/metalearn/tensorflow_datasets."""
  return (os.environ.get(METALEARN_DATA_DIR_ENV)
          or os.path.join(os.path.expanduser("~"), ".cache", "metalearn",
                          "tensorflow_datasets"))



# ---------------------------------------------------------------------------
# Preparation.


@contextlib.contextmanager
def quiet() -> Iterator[None]:
  """Silences TFDS's absl warnings and progress bars for the duration."""
  logger = logging.getLogger("absl")
  level = logger.level
  # pylint: disable-next=protected-access
  progress = getattr(tfds.core.utils.tqdm_utils, "_active", True)
  logger.setLevel(logging.ERROR)
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    tfds.display_progress_bar(progress)
    logger.setLevel(level)


def is_local(path: str) -> bool:
  return "://" not in path


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
  data_dir = os.fspath(data_dir) if data_dir else default_data_dir()
  if is_local(data_dir):
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
  return data_dir


@contextlib.contextmanager
def _file_lock(data_dir: str, name: str) -> Iterator[None]:
  """Exclusive lock shared by every process preparing `name` in `data_dir`."""
  if not is_local(data_dir):
    yield  # No flock on remote file systems; preparing there is the user's.
    return
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, f".{name}.lock"), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _remove_partial(builder: tfds.core.DatasetBuilder) -> None:
  """Deletes what an interrupted prepare left (call under the lock)."""
  version_dir = os.fspath(builder.data_path)
  if os.path.exists(version_dir):  # Exists but is not a valid prepared dir.
    shutil.rmtree(version_dir)
  parent = os.path.dirname(version_dir)
  suffix = "_" + os.path.basename(version_dir)
  if os.path.isdir(parent):
    for entry in os.listdir(parent):
      if entry.startswith("incomplete.") and entry.endswith(suffix):
        shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _prepare_bundled(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """Returns the builder of a bundled dataset, preparing it if needed."""
  cls = BUILDERS[name]
  with quiet():
    builder = cls(data_dir=data_dir)
    if builder.is_prepared():
      # A builder reads its splits from disk when it is made: if another process finished
      # preparing between the line above and this check, this one has none. Make it again.
      return cls(data_dir=data_dir)
    with lock, _file_lock(data_dir, cls.name):
      builder = cls(data_dir=data_dir)  # Another process may have finished.
      if not builder.is_prepared():
        _remove_partial(builder)
        start = time.perf_counter()
        # TFDS prints banners and makes an (unused) download dir: hide both.
        with (contextlib.redirect_stdout(io.StringIO()),
              tempfile.TemporaryDirectory() as download_dir):
          builder.download_and_prepare(
              download_dir=download_dir,
              file_format="array_record",
              download_config=tfds.download.DownloadConfig(
                  try_download_gcs=False),
          )
        _log.info("Prepared %s in %s (%.1f s).", cls.name, data_dir,
                  time.perf_counter() - start)
        builder = cls(data_dir=data_dir)
  return builder


def _prepare_command(name: str, data_dir: str) -> str:
  return ("python -c \"import tensorflow_datasets as tfds; "
          f"tfds.builder('{name}', data_dir='{data_dir}')"
          ".download_and_prepare(file_format='array_record')\"")


def _not_prepared(name: str, data_dir: str, detail: str) -> \
    DatasetNotPreparedError:
  """The error for an unprepared TFDS dataset, with the command that fixes it."""
  base = re.split(r"[/:]", name, maxsplit=1)[0]
  matches = [n for n, cls in BUILDERS.items() if cls.name == base]
  if matches:
    return DatasetNotPreparedError(
        f"{name!r} is not prepared in data dir {data_dir!r} ({detail}); load "
        f"it by its bundled name {matches[0]!r}, which prepares it offline.")
  return DatasetNotPreparedError(
      f"TFDS dataset {name!r} is not prepared in data dir {data_dir!r} "
      f"({detail}). metalearn never downloads data. To fix it, on a machine "
      "with network access and `pip install tensorflow tensorflow-datasets "
      "importlib_resources` (most TFDS builders need TensorFlow to prepare; "
      "TFDS 4.9 also imports the importlib_resources backport) run:\n"
      f"  {_prepare_command(name, data_dir)}\n"
      f"then copy the folder {base}/ it makes there into {data_dir} here, or "
      f"set {DATA_DIR_ENV} (or pass data_dir=) to a directory that already "
      "holds it (e.g. a gcsfuse-mounted bucket on Cloud TPU). Bundled "
      f"datasets that need no download: {', '.join(BUNDLED)}.")


_NAMESPACED = re.compile(r"^[\w-]+:[A-Za-z_]")


def _check_name(name: str, data_dir: str) -> None:
  """Raises ValueError unless `name` is bundled or a TFDS dataset name."""
  if name in BUNDLED:
    return
  hint = (f"Bundled datasets (prepared offline on first use): "
          f"{', '.join(BUNDLED)}; any other name must be a registered TFDS "
          "dataset prepared in the data dir.")
  if not isinstance(name, str) or not name or _NAMESPACED.match(name):
    raise ValueError(f"Unsupported dataset name {name!r}. {hint}")
  base = re.split(r"[/:]", name, maxsplit=1)[0]
  try:
    tfds.builder_cls(base)
    return
  except tfds.core.registered.DatasetNotFoundError:
    pass
  if is_local(data_dir) and os.path.isdir(os.path.join(data_dir, base)):
    return  # Prepared elsewhere from code that is not installed here.
  raise ValueError(f"Unknown dataset {name!r}. {hint}")


def _named_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """Builder of an already prepared TFDS dataset; never downloads."""
  with quiet():
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise _not_prepared(name, data_dir, "no files found") from e
    if not builder.is_prepared():
      raise _not_prepared(name, data_dir,
                          f"no {os.fspath(builder.data_path)}")
    file_format = builder.info.file_format
    random_access = tfds.core.file_adapters.FileFormat.with_random_access()
    if file_format is not None and file_format not in random_access:
      raise _not_prepared(
          name, data_dir,
          f"it is prepared as {file_format.value}, which has no random "
          "access; prepare it again with file_format='array_record'")
  return builder


def builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  _check_name(name, data_dir)
  if name in BUNDLED:
    if not is_local(data_dir):
      # ArrayRecord cannot write remote paths, and bundled data is local
      # anyway: keep it in the local cache when TFDS_DATA_DIR is a bucket.
      data_dir = resolve_data_dir(_local_cache_dir())
      if not is_local(data_dir):
        raise ValueError(f"Bundled dataset {name!r} needs a local data dir; "
                         f"set {METALEARN_DATA_DIR_ENV} to one.")
    return _prepare_bundled(name, data_dir)
  return _named_builder(name, data_dir)


def prepare(name: str, data_dir: str | None = None) -> str:
  """Prepares a bundled dataset (idempotent) and returns its dataset dir.

  For a TFDS dataset name, checks that it is prepared and returns its dir, or
  raises `DatasetNotPreparedError` saying how to prepare it.
  """
  data_dir = resolve_data_dir(data_dir)
  return os.fspath(builder(name, data_dir).data_dir)
