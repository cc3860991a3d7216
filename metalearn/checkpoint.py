"""The one orbax checkpoint wrapper: async saves, keep-N, preemption-aware, config as JSON.

A checkpoint holds the whole meta-training state (meta-parameters, outer optimizer state,
estimator state with every inner run, the RNG key and the step) plus the config as JSON, so that a
run restarted on the same workdir continues exactly where it stopped. Arrays are stored as a flat
dict keyed by position in the state's pytree; restoring needs a template of the same structure,
which the trainer builds from the config (and refuses to do when the stored config differs).
"""
from __future__ import annotations

import os
import signal
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _named(tree) -> dict:
  """The tree's leaves keyed by position: the flat layout a checkpoint stores."""
  return {f"{i:05d}": x for i, x in enumerate(jax.tree.leaves(tree))}


def _flatten(tree) -> dict:
  return {k: (jax.random.key_data(x) if _is_key(x) else x) for k, x in _named(tree).items()}


def _unflatten(template, flat: dict):
  leaves, treedef = jax.tree.flatten(template)
  out = []
  for i, t in enumerate(leaves):
    x = flat[f"{i:05d}"]
    out.append(jax.random.wrap_key_data(x) if _is_key(t) else x)
  return jax.tree.unflatten(treedef, out)


def _abstract(x):
  if _is_key(x):
    data = jax.eval_shape(jax.random.key_data, x)
    return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=getattr(x, "sharding", None))
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


class Checkpointer:
  """``save(step, state, config)``, ``restore(template)``, ``latest_step()``, ``config()``."""

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory) if "://" not in directory else directory
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "config"))
    self._preempted = threading.Event()

  # -- preemption ---------------------------------------------------------------------------------
  def install_signal_handlers(self) -> None:
    """On SIGTERM (spot preemption, ``kill``) finish the current step, save, and stop."""
    if threading.current_thread() is not threading.main_thread():
      return
    signal.signal(signal.SIGTERM, lambda *_: self._preempted.set())

  def should_stop(self, step: int) -> bool:
    return self._preempted.is_set() or self._manager.reached_preemption(step)

  # -- save / restore -----------------------------------------------------------------------------
  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, config: dict, *, force: bool = False) -> bool:
    return self._manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(_flatten(state)),
                                      config=ocp.args.JsonSave(config)), force=force)

  def config(self, step: int | None = None) -> dict:
    step = self.latest_step() if step is None else step
    out = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return dict(out["config"])

  def restore(self, template, step: int | None = None):
    """Restores into the structure (and shardings) of ``template`` (arrays or abstract arrays).

    Raises ``ValueError`` naming the first difference when the stored arrays do not have the
    template's layout (a checkpoint written by another version of the state, e.g. a rule whose
    optimizer state changed shape), instead of failing deep inside orbax or misreading arrays.
    """
    step = self.latest_step() if step is None else step
    abstract = {k: _abstract(v) for k, v in _named(template).items()}
    self._check_layout(abstract, step)
    out = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return _unflatten(template, out["state"])

  def _state_path(self, step: int):
    from etils import epath
    return epath.Path(self.directory) / str(step) / "state"

  def _stored_layout(self, step: int) -> dict:
    reader = ocp.StandardCheckpointer()
    try:
      return dict(reader.metadata(self._state_path(step)).item_metadata)
    finally:
      reader.close()

  def _check_layout(self, abstract: dict, step: int) -> None:
    stored = self._stored_layout(step)
    problem = None
    if len(stored) != len(abstract):
      problem = f"it holds {len(stored)} arrays where this code's state has {len(abstract)}"
    else:
      for k in sorted(abstract):
        want, got = abstract[k], stored.get(k)
        if got is None or tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
          got_desc = "nothing" if got is None else f"{got.dtype}{list(got.shape)}"
          problem = (f"array {k} is {got_desc} where this code expects "
                     f"{want.dtype}{list(want.shape)}")
          break
    if problem:
      raise ValueError(
          f"checkpoint {step} in {self.directory} does not match this code's meta-training state: "
          f"{problem}. It was probably written by another metalearn version (e.g. one whose rule "
          "keeps a different optimizer state). Resume it with that version, or start a new --workdir "
          "(the checkpoint is left as it is).")

  def restore_arrays(self, step: int | None = None) -> dict:
    """The raw flat arrays of a checkpoint, as numpy, with no template (for inspection/export).

    Works on any machine: arrays saved sharded over another topology (a pod slice, 8 emulated
    devices) are restored whole onto this process's first device.
    """
    step = self.latest_step() if step is None else step
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=device)
              for k, v in self._stored_layout(step).items()}
    reader = ocp.StandardCheckpointer()
    try:
      out = reader.restore(self._state_path(step), target)
    finally:
      reader.close()
    return {k: np.asarray(v) for k, v in out.items()}

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

