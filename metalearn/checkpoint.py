"""The one orbax checkpoint wrapper: async saves, keep-N, named arrays, damaged-checkpoint fallback.

A checkpoint holds the whole meta-training state (meta-parameters, outer optimizer state,
estimator state with every inner run, the RNG key and the step) plus the config as JSON, so that a
run restarted on the same workdir continues exactly where it stopped. Arrays are stored as a
nested dict keyed by their field names in the state (``theta/w_in``, ``members/0/inner/params/...``),
so a reader can take ``theta`` by name, and a restore checks the stored layout against the code's
before reading (a checkpoint of another state layout gets a message naming the first mismatch).

A checkpoint that cannot be read (a truncated file, damaged metadata) is skipped with a warning
naming it, and the newest one that restores is used; a writer moves the damaged one aside to
``STEP.damaged`` (kept for inspection) so that the run can save that step again.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath


class _QuietReadOnly(logging.Filter):
  """Drops orbax's notice that a read-only manager's directory is read-only (it is, by choice)."""

  def filter(self, record):
    return "Given directory is read only" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietReadOnly())


class CheckpointError(RuntimeError):
  """A checkpoint could not be written or no checkpoint could be read; the message says why."""


def _is_key(x) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _names(tree) -> list[tuple[tuple[str, ...], object]]:
  return [(tuple(_key_name(k) for k in path), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def to_nested(tree) -> dict:
  """The tree's array leaves as nested dicts keyed by field names (PRNG keys as raw key data)."""
  out: dict = {}
  for names, leaf in _names(tree):
    d = out
    for n in names[:-1]:
      d = d.setdefault(n, {})
    d[names[-1]] = _key_data(leaf) if _is_key(leaf) else leaf
  return out


def _key_data(key):
  if isinstance(key, jax.ShapeDtypeStruct):  # an abstract template
    data = jax.eval_shape(jax.random.key_data, key)
    return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=key.sharding)
  return jax.random.key_data(key)


def from_nested(template, nested: dict):
  """Inverse of ``to_nested`` into the structure of ``template``."""
  leaves = []
  for names, t in _names(template):
    x = nested
    for n in names:
      x = x[n]
    leaves.append(jax.random.wrap_key_data(x) if _is_key(t) else x)
  return jax.tree.unflatten(jax.tree.structure(template), leaves)


def _abstract(x):
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


def _flat(nested: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in nested.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = v
  return out


class Checkpointer:
  """``save(step, state, config)``, ``restore(template)``, ``latest_step()``, ``config()``."""

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True,
               read_only: bool = False):
    self.directory = os.path.abspath(directory) if "://" not in directory else directory
    # A reader (evaluate, load_optimizer) opens the manager read-only, with the options orbax
    # would otherwise warn that it overrides.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep, create=not read_only,
        save_interval_steps=0 if read_only else 1, enable_async_checkpointing=async_save,
        read_only=read_only)
    self.read_only = read_only
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "config": ocp.JsonCheckpointHandler()})
    self._stop = threading.Event()
    self.stop_signal: str | None = None

  # -- interruption -------------------------------------------------------------------------------
  def install_signal_handlers(self) -> None:
    """SIGTERM (spot preemption, ``kill``) and SIGINT (Ctrl-C): finish the step, save, stop."""
    if threading.current_thread() is not threading.main_thread():
      return

    def handler(signum, frame):
      del frame
      if self._stop.is_set() and signum == signal.SIGINT:
        raise KeyboardInterrupt  # a second Ctrl-C stops at once
      self.stop_signal = signal.Signals(signum).name
      self._stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

  def should_stop(self, step: int) -> bool:
    return self._stop.is_set() or self._manager.reached_preemption(step)

  # -- save ---------------------------------------------------------------------------------------
  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, config: dict) -> None:
    """Saves ``step`` (a no-op if it is already saved); raises CheckpointError on failure at once."""
    if step in self._manager.all_steps():
      return
    try:
      self._manager.check_for_errors()  # an earlier async save that failed
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(to_nested(state)), config=ocp.args.JsonSave(config)),
          force=True)
      self._manager.check_for_errors()
    except Exception as e:  # orbax wraps I/O errors in several types
      raise self._save_error(step, e) from e

  def _save_error(self, step, e) -> CheckpointError:
    good = [s for s in self._manager.all_steps() if s != step]
    last = f"the last good checkpoint is step {max(good)}" if good else "no earlier checkpoint exists"
    full = isinstance(e, OSError) and e.errno == errno.ENOSPC or "No space left" in str(e)
    why = "the disk is full" if full else f"{type(e).__name__}: {e}"
    return CheckpointError(f"could not save checkpoint {step} in {self.directory}: {why}; {last} "
                           "(left as it is). Free space or fix the directory, then rerun the same "
                           "command to resume.")

  def wait(self) -> None:
    try:
      self._manager.wait_until_finished()
      self._manager.check_for_errors()
    except CheckpointError:
      raise
    except Exception as e:
      raise self._save_error(self._manager.latest_step(), e) from e

  def close(self) -> None:
    try:
      self._manager.wait_until_finished()
    finally:
      self._manager.close()

  # -- restore ------------------------------------------------------------------------------------
  def config(self, step: int | None = None) -> dict:
    step = self.latest_step() if step is None else step
    out = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    if not isinstance(out["config"], dict):
      raise ValueError(f"checkpoint {step} in {self.directory} has no readable config.")
    return dict(out["config"])

  def newest_config(self) -> tuple[dict, int]:
    """``(config, step)`` of the newest checkpoint whose config reads (damaged ones skipped)."""
    return self._restorable(self.config)

  def _metadata(self, step: int) -> dict:
    meta = self._manager.item_metadata(step)["state"]
    if meta is None:
      raise ValueError(f"checkpoint {step} in {self.directory} has no readable state metadata.")
    return dict(getattr(meta, "tree", meta))

  def _stored_layout(self, step: int) -> dict:
    return _flat(self._metadata(step))

  def _check_layout(self, abstract: dict, step: int) -> None:
    stored, want = self._stored_layout(step), _flat(abstract)
    problem = None
    for k in sorted(set(want) | set(stored)):
      w, got = want.get(k), stored.get(k)
      if w is None:
        problem = f"it holds array {k} that this code's state does not have"
      elif got is None or tuple(got.shape) != tuple(w.shape) or got.dtype != w.dtype:
        got_desc = "missing" if got is None else f"{got.dtype}{list(got.shape)}"
        problem = f"array {k} is {got_desc} where this code expects {w.dtype}{list(w.shape)}"
      if problem:
        break
    if problem:
      raise ValueError(
          f"checkpoint {step} in {self.directory} does not match this code's meta-training state: "
          f"{problem}. It was probably written by another metalearn version (e.g. one whose rule "
          "keeps a different optimizer state). Resume it with that version, or start a new --workdir "
          "(the checkpoint is left as it is).")

  def _restorable(self, read):
    """``(result, step)`` of ``read(step)`` for the newest step that reads; warns for the others."""
    steps = sorted(self._manager.all_steps(), reverse=True)
    for step in steps:
      try:
        return read(step), step
      except ValueError as e:
        if "does not match this code" in str(e):
          raise
        err = e
      except Exception as e:  # a damaged checkpoint fails in many ways inside orbax
        err = e
      warnings.warn(f"checkpoint {step} in {self.directory} could not be read "
                    f"({type(err).__name__}: {str(err)[:200]}); using an older one. It is left "
                    "in place for inspection.", stacklevel=3)
      if not self.read_only:
        self._quarantine(step)
    raise CheckpointError(f"no checkpoint in {self.directory} could be read (tried steps "
                          f"{steps}); start a new --workdir or restore them from a backup.")

  def _quarantine(self, step: int) -> None:
    path = epath.Path(self.directory) / str(step)
    path.rename(epath.Path(self.directory) / f"{step}.damaged")
    self._manager.reload()

  def restore(self, template):
    """``(state, step)``: the newest readable checkpoint, into ``template``'s structure/shardings."""
    abstract = jax.tree.map(_abstract, to_nested(template))

    def read(step):
      self._check_layout(abstract, step)
      out = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
      return from_nested(template, out["state"]), self.config(step)

    (state, _), step = self._restorable(read)
    return state, step

  def restore_arrays(self, subtree: str | None = None, *, step: int | None = None):
    """``(arrays, config, step)``: the newest readable checkpoint's nested arrays (numpy), or one
    named subtree of them (e.g. ``"theta"``), with no template. Arrays saved sharded over another
    topology are restored whole onto this process's first device. ``step`` reads that checkpoint
    instead of the newest (e.g. to score every kept checkpoint; errors are not caught).
    """
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def read(step):
      target = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=device),
                            self._metadata(step), is_leaf=lambda v: hasattr(v, "shape"))
      out = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
      out = out if subtree is None else out[subtree]
      return jax.tree.map(np.asarray, out), self.config(step)

    if step is not None:
      return (*read(step), step)
    (arrays, config), step = self._restorable(read)
    return arrays, config, step
