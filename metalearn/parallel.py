"""Device mesh, sharding of the task population, and multi-host start-up.

The task population is the sharded axis: a one-dimensional Mesh with axis ``'task'`` over every
device of every host. Meta-parameters and datasets are replicated; population leaves are split
along their leading axis. The same code runs on 1 CPU device, 8 emulated CPU devices, a GPU and a
TPU pod slice.
"""
from __future__ import annotations

import os
import socket
import time

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXIS = "task"


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           local_device_ids=None, timeout_s: int = 120) -> None:
  """Starts JAX's multi-controller runtime; call before any device is touched.

  On Cloud TPU pass nothing: JAX reads the slice's topology from the metadata server. Elsewhere
  pass the coordinator's ``host:port``, the number of processes and this process's id.
  """
  if jax.config.jax_platforms in ("cpu",) or os.environ.get("JAX_PLATFORMS") == "cpu":
    # Cross-process collectives on CPU (tests, CPU clusters) go through gloo.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  given = [coordinator_address is not None, num_processes is not None, process_id is not None]
  if any(given) and not all(given):
    raise ValueError("multi-host start-up needs all of coordinator_address, num_processes and "
                     "process_id (or none of them, on Cloud TPU).")
  if all(given) and int(process_id) != 0:
    _wait_for_coordinator(coordinator_address, timeout_s)
  kwargs = dict(coordinator_address=coordinator_address, num_processes=int(num_processes),
                process_id=int(process_id), local_device_ids=local_device_ids) if all(given) else {}
  try:
    jax.distributed.initialize(**kwargs, initialization_timeout=int(timeout_s))
  except Exception as e:  # the runtime raises XlaRuntimeError / RuntimeError on a timeout
    where = coordinator_address or "the address Cloud TPU metadata gives"
    raise ConnectionError(
        f"could not join the multi-host run at coordinator {where} within {timeout_s} s "
        f"({type(e).__name__}: {str(e)[:300]}). Check that the coordinator process (process 0) is "
        "running and that host:port is reachable from this host.") from e


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Waits until ``host:port`` accepts connections; ConnectionError naming it after ``timeout_s``.

  JAX's runtime aborts the whole process (no Python exception) when the coordinator never
  answers, so a worker checks that it is reachable first.
  """
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"coordinator_address must be HOST:PORT, got {address!r}.")
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
      return
    except OSError as e:
      if time.monotonic() > deadline:
        raise ConnectionError(
            f"could not join the multi-host run: coordinator {address} did not answer within "
            f"{timeout_s} s ({e.strerror or e}). Check that the coordinator process (process 0) "
            "is running and that host:port is reachable from this host.") from e
      time.sleep(0.5)


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (all devices of all hosts by default)."""
  devices = jax.devices()
  n = len(devices) if not num_devices else int(num_devices)
  if n > len(devices):
    raise ValueError(f"asked for {n} devices but only {len(devices)} are visible "
                     f"({jax.default_backend()}). On CPU set JAX_NUM_CPU_DEVICES={n} before JAX "
                     "starts, or lower num_devices.")
  # Auto axis types: the compiler places the population's collectives (GSPMD), and arrays carry
  # no sharding in their types, so the same code runs on any device count.
  return jax.make_mesh((n,), (AXIS,), axis_types=(AxisType.Auto,), devices=devices[:n])


def population_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def put_replicated(tree, mesh: Mesh):
  """Places host arrays on every device of the mesh (each host passes the full array)."""
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      tree)


def is_main_process() -> bool:
  return jax.process_index() == 0
