"""Optuna studies that survive and scale: samplers, pruners, storage, and the space they belong to.

    study = open_study("adam_digits", space, workdir="runs/s", sampler="tpe", pruner="median")

Storage is a SQLite file in the workdir by default (``sqlite:///WORKDIR/study.db``); any URL
Optuna's ``RDBStorage`` accepts (PostgreSQL, MySQL) lets worker processes on many hosts share one
study. Every completed trial is committed as it is told, so a SIGKILL loses at most the trials
running at that moment; the next ``open_study`` marks those failed and re-queues their parameters
(at once for dead processes on this host, after ``GRACE_S`` without a heartbeat for other hosts).

Everything a caller can get wrong is checked before the storage is touched where possible: the
sampler and pruner names, the space; then the storage URL (unreachable: ``ConnectionError``) and
the study (same name, other space or direction: ``ValueError``, nothing changed).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import warnings

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from metalearn.search.space import Space

SAMPLERS = ("tpe", "cmaes", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
DB_FILE = "study.db"
HEARTBEAT_S = 60
GRACE_S = 600
SPACE_ATTR = "metalearn.space"
WORKER_ATTR = "metalearn.worker"



@contextlib.contextmanager
def quiet():
  """Heartbeats are recorded by hand here (a vmapped batch of trials runs in one call), which
  Optuna warns about on every ask; and the heartbeat API it marks experimental is the one to use."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    yield


def default_storage(workdir: str) -> str:
  return f"sqlite:///{os.path.abspath(os.path.join(workdir, DB_FILE))}"


def check_sampler(name: str) -> None:
  if name not in SAMPLERS:
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")


def check_pruner(name: str) -> None:
  if name not in PRUNERS:
    raise ValueError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}.")


def make_sampler(name: str, space: Space, *, seed: int = 0, n_trials: int | None = None,
                 grid: dict | None = None, **kwargs) -> optuna.samplers.BaseSampler:
  """TPE (multivariate, with a constant liar so a batch of asked trials spreads out), CMA-ES,
  random, or a grid (``grid`` or ``space.grid(grid_points)``). ``kwargs`` go to the sampler."""
  check_sampler(name)
  if name == "tpe":
    # A third of a small budget at random, not Optuna's fixed 10, so small studies use TPE at all.
    startup = kwargs.pop("n_startup_trials", max(2, min(10, (n_trials or 30) // 3)))
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=startup, **kwargs)
  if name == "cmaes":
    try:
      import cmaes  # noqa: F401  (Optuna imports it lazily and fails late)
    except ImportError as e:
      raise ValueError("sampler cmaes needs the `cmaes` package: pip install cmaes.") from e
    return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)
  if name == "random":
    return optuna.samplers.RandomSampler(seed=seed, **kwargs)
  points = kwargs.pop("grid_points", 5)
  grid = dict(grid) if grid else space.grid(points)
  missing = set(space.names) - set(grid)
  if missing:
    raise ValueError(f"grid sampler: the grid gives no values for {sorted(missing)}.")
  for n, values in grid.items():
    d = space.distributions.get(n)
    outside = [v for v in values if d is None or not _in(d, v)]
    if outside:
      raise ValueError(f"grid sampler: values {outside} of {n!r} are outside the search space "
                       f"({d}).")
  return optuna.samplers.GridSampler(grid, seed=seed, **kwargs)


def _in(distribution, value) -> bool:
  try:
    return distribution._contains(distribution.to_internal_repr(value))
  except (ValueError, TypeError):
    return False


def make_pruner(name: str, *, num_reports: int = 4, **kwargs) -> optuna.pruners.BasePruner:
  """No pruning, the median rule, or Hyperband over ``num_reports`` intermediate reports."""
  check_pruner(name)
  if name == "median":
    return optuna.pruners.MedianPruner(**{"n_startup_trials": 4, **kwargs})
  if name == "hyperband":
    return optuna.pruners.HyperbandPruner(**{"min_resource": 1, "max_resource": num_reports,
                                             "reduction_factor": 3, **kwargs})
  return optuna.pruners.NopPruner()


def open_storage(url: str) -> RDBStorage:
  """An ``RDBStorage`` for ``url`` with heartbeats; ``ConnectionError`` if it cannot be reached."""
  if "://" not in url:
    raise ValueError(f"storage {url!r} is not a database URL (e.g. sqlite:///path/study.db, "
                     "postgresql://user:pass@host/db).")
  sqlite = url.startswith("sqlite")
  engine = ({"connect_args": {"timeout": 120}} if sqlite else
            {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
            if url.startswith(("postgresql", "mysql")) else {})
  if sqlite:
    path = url.split(":///", 1)[-1]
    folder = os.path.dirname(os.path.abspath(path)) if path else ""
    if path and not os.path.isdir(folder):
      raise ConnectionError(f"cannot reach storage {url}: folder {folder} does not exist.")
  try:
    with quiet():
      return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                      grace_period=GRACE_S,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
  except ImportError as e:
    raise ConnectionError(f"cannot reach storage {url}: its database driver is not installed "
                          f"({e}).") from e
  except Exception as e:  # SQLAlchemy raises OperationalError, ArgumentError, ...
    raise ConnectionError(f"cannot reach storage {url}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:300]}") from e


def open_study(name: str, space: Space, *, workdir: str | None = None, storage: str | None = None,
               sampler: str | optuna.samplers.BaseSampler = "tpe",
               pruner: str | optuna.pruners.BasePruner = "median",
               direction: str | list[str] = "minimize", seed: int = 0, n_trials: int | None = None,
               num_reports: int = 4, grid: dict | None = None,
               sampler_kwargs: dict | None = None) -> optuna.Study:
  """Creates or resumes study ``name`` in ``storage`` (default: SQLite in ``workdir``).

  The worker that creates the study samples with ``seed``; a worker joining or resuming an
  existing study mixes its process id into it, so that workers sharing a study do not propose the
  same trials (a sampler's state lives in its process, not in the storage).
  """
  space = Space(space)
  make = lambda seed: make_sampler(sampler, space, seed=seed, n_trials=n_trials, grid=grid,
                                   **(sampler_kwargs or {})) if isinstance(sampler, str) else sampler
  make(seed)   # checks the sampler's name and grid before the storage is touched
  if isinstance(pruner, str):
    pruner = make_pruner(pruner, num_reports=num_reports)
  directions = [direction] if isinstance(direction, str) else list(direction)
  if not directions or set(directions) - {"minimize", "maximize"}:
    raise ValueError(f"direction must be minimize or maximize (or a list of them, one per "
                     f"objective), got {direction!r}.")
  if not name:
    raise ValueError("a study needs a name.")
  if storage is None:
    if workdir is None:
      raise ValueError("open_study needs a workdir (for its SQLite file) or a storage URL.")
    os.makedirs(workdir, exist_ok=True)
    storage = default_storage(workdir)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  rdb = open_storage(storage)
  try:
    rdb.get_study_id_from_name(name)
    exists = True
  except KeyError:
    exists = False
  sampler = make(seed + (os.getpid() if exists else 0))
  if exists:
    study = optuna.load_study(study_name=name, storage=rdb, sampler=sampler, pruner=pruner)
    check_same(study, space, directions, storage)
  else:
    study = optuna.create_study(study_name=name, storage=rdb, sampler=sampler, pruner=pruner,
                                directions=directions, load_if_exists=True)  # a racing worker
    check_same(study, space, directions, storage)
    study.set_user_attr(SPACE_ATTR, space.signature)
  recover_stale_trials(study)
  return study


def check_same(study: optuna.Study, space: Space, directions: list[str], url: str) -> None:
  stored = study.user_attrs.get(SPACE_ATTR)
  if stored is not None and stored != space.signature:
    old, new = json.loads(stored), json.loads(space.signature)
    diff = "; ".join(f"{n}: {_brief(old.get(n))} there, {_brief(new.get(n))} here"
                     for n in sorted(set(old) | set(new)) if old.get(n) != new.get(n))
    raise ValueError(
        f"study {study.study_name!r} in {url} already exists with another search space ({diff}). "
        "Use another study name (or a new workdir) for a new space; nothing was changed.")
  stored_dirs = [d.name.lower() for d in study.directions]
  if stored_dirs != list(directions):
    raise ValueError(f"study {study.study_name!r} in {url} already exists to "
                     f"{' and '.join(stored_dirs)}, not {' and '.join(directions)}; nothing was "
                     "changed.")


def _brief(d) -> str:
  if d is None:
    return "absent"
  attrs = {k: v for k, v in d["attributes"].items() if v not in (None, False)}
  return f"{d['name'].replace('Distribution', '')}{attrs}"


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def recover_stale_trials(study: optuna.Study) -> list[int]:
  """Fails (and re-queues) trials left RUNNING by a killed worker; returns their numbers.

  Dead processes of this host are recognised at once by their pid; other hosts' workers by
  heartbeats older than ``GRACE_S`` (Optuna's ``fail_stale_trials``).
  """
  storage, host = study._storage, socket.gethostname()
  recovered = []
  for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
    worker = t.user_attrs.get(WORKER_ATTR, "")
    w_host, _, w_pid = worker.rpartition(":")
    if w_host == host and w_pid.isdigit() and int(w_pid) != os.getpid() and not _alive(int(w_pid)):
      try:
        failed = storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
      except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
        continue
      if failed:
        storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(t._trial_id))
        recovered.append(t.number)
  with quiet():
    optuna.storages.fail_stale_trials(study)
  return recovered


def mark_worker(trial) -> None:
  trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")


def heartbeat(study: optuna.Study, trials) -> None:
  """Records that ``trials`` are alive (a long vmapped batch holds them all at once)."""
  for t in trials:
    study._storage.record_heartbeat(t._trial_id)
