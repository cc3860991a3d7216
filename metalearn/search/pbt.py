"""Population-based training: a population of inner runs in one jitted program, with a replayable
schedule.

    pbt = PBT(task, "adamw", num_steps=400, num_intervals=8,
              bounds={"learning_rate": (1e-4, 1e-1)}, population=16)
    out = pbt.run(init_hparams={"learning_rate": np.geomspace(1e-4, 1e-1, 16)})
    replayed = pbt.replay(out, member=int(np.argmin(out["test_loss"])))   # one run, same result

The population is ``vmap``-ed and, when it divides the devices, sharded over the ``'task'`` mesh
axis with ``jax.shard_map``; the intervals are a ``lax.scan``, so the whole search is one ``jit``.
Hyperparameters live in the optimizer state (``optax.inject_hyperparams``). After every interval
but the last, members are ranked by their training loss over the interval's second half; the
bottom ``exploit`` fraction copy a random member of the top fraction -- parameters, optimizer
state and hyperparameters together -- and explore by multiplying each hyperparameter by a factor
from ``perturb``, clipped to ``bounds``. The schedule (every member's hyperparameters per
interval, and whom it copied) is returned; ``replay`` retrains one member's lineage from it alone.
Member ``i`` always draws batches from its own key, so a replay sees the same data.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

import metalearn.parallel as parallel
from metalearn.tasks.base import Task
from metalearn.tasks.training import train_step

MUTABLE = {"adamw": ("learning_rate", "weight_decay", "b1", "b2"),
           "sgdm": ("learning_rate", "momentum"), "lion": ("learning_rate", "weight_decay")}


def pbt_optimizer(name: str):
  """``(factory, names)``: an ``inject_hyperparams`` optimizer and the hyperparameters it takes."""
  if name == "adamw":
    return optax.inject_hyperparams(optax.adamw), MUTABLE[name]
  if name == "sgdm":
    return optax.inject_hyperparams(lambda learning_rate, momentum: optax.sgd(
        learning_rate, momentum=momentum)), MUTABLE[name]
  if name == "lion":
    return optax.inject_hyperparams(optax.lion), MUTABLE[name]
  raise ValueError(f"PBT optimizer must be one of {sorted(MUTABLE)}, got {name!r}.")


class PBT:
  """Population-based training of ``optimizer``'s hyperparameters on ``task`` (module doc)."""

  def __init__(self, task: Task, optimizer: str = "adamw", *, num_steps: int, num_intervals: int,
               bounds: dict, population: int = 16, exploit: float = 0.25,
               perturb=(0.8, 1.25), seed: int = 0, mesh=None, num_test_batches: int = 8):
    self.factory, names = pbt_optimizer(optimizer)
    unknown = set(bounds) - set(names)
    if not bounds or unknown:
      raise ValueError(f"PBT bounds must name some of {names} for {optimizer}, got "
                       f"{sorted(bounds)}.")
    for n, (lo, hi) in bounds.items():
      if not 0 < lo <= hi:
        raise ValueError(f"PBT bounds of {n!r} must satisfy 0 < low <= high, got ({lo}, {hi}).")
    if num_intervals < 1 or num_steps % num_intervals:
      raise ValueError(f"num_steps ({num_steps}) must be a multiple of num_intervals "
                       f"({num_intervals}).")
    if population < 2 or not 0 < exploit <= 0.5:
      raise ValueError(f"need population >= 2 and 0 < exploit <= 0.5, got {population}, "
                       f"{exploit}.")
    self.task, self.optimizer, self.bounds = task, optimizer, dict(sorted(bounds.items()))
    self.num_steps, self.num_intervals, self.population = num_steps, num_intervals, population
    self.interval = num_steps // num_intervals
    self.num_exploit = max(1, int(population * exploit))
    self.perturb, self.seed = tuple(float(f) for f in perturb), seed
    self.mesh = mesh or parallel.make_mesh()
    self.sharded = population % self.mesh.devices.size == 0
    self.num_test_batches = num_test_batches

  # -- pieces shared by the population run and the replay ------------------------------------------
  def _keys(self, member):
    k_init, k_train, k_test = jax.random.split(jax.random.fold_in(jax.random.key(self.seed),
                                                                  member), 3)
    return k_init, k_train, k_test

  def _init(self, member, hparams):
    k_init, _, _ = self._keys(member)
    params = self.task.init(k_init)
    # jnp arrays: optax.inject_hyperparams treats numpy scalars as static (not in the state).
    return params, self.factory(**{n: jnp.asarray(v, jnp.float32)
                                   for n, v in hparams.items()}).init(params)

  def _train(self, member, k, params, opt_state, data):
    """Interval ``k`` of member ``member``: (params, opt_state, score, losses)."""
    tx = self.factory(**{n: 0.0 for n in self.bounds})  # values come from opt_state
    keys = jax.random.split(jax.random.fold_in(self._keys(member)[1], k), self.interval)

    def step(carry, key):
      p, s, loss = train_step(self.task, tx, *carry, data, key)
      return (p, s), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), keys)
    tail = losses[self.interval // 2:]
    score = jnp.where(jnp.all(jnp.isfinite(tail)), jnp.mean(tail), jnp.inf)
    return params, opt_state, score

  def _test(self, member, params, test_data):
    keys = jax.random.split(self._keys(member)[2], self.num_test_batches)
    return jnp.mean(jax.vmap(lambda k: self.task.loss(params, self.task.batch(test_data, k)))(keys))

  @staticmethod
  def _hparams(opt_state):
    return opt_state.hyperparams

  def _with_hparams(self, opt_state, hp):
    return opt_state._replace(hyperparams={**opt_state.hyperparams, **{
        n: jnp.asarray(v, opt_state.hyperparams[n].dtype) for n, v in hp.items()}})

  # -- the population ------------------------------------------------------------------------------
  def _program(self, init_hp, data, test_data):
    members = jnp.arange(self.population)
    params, opt_state = jax.vmap(self._init)(members, init_hp)
    train = jax.vmap(self._train, in_axes=(0, None, 0, 0, None))
    if self.sharded:
      train = jax.shard_map(train, mesh=self.mesh,
                            in_specs=(P(parallel.AXIS), P(), P(parallel.AXIS), P(parallel.AXIS),
                                      P()),
                            out_specs=P(parallel.AXIS), check_vma=False)
    lo = {n: jnp.float32(b[0]) for n, b in self.bounds.items()}
    hi = {n: jnp.float32(b[1]) for n, b in self.bounds.items()}

    def interval(carry, k):
      params, opt_state = carry
      used = {n: opt_state.hyperparams[n] for n in self.bounds}
      params, opt_state, score = train(members, k, params, opt_state, data)
      key = jax.random.fold_in(jax.random.key(self.seed + 1), k)
      parent = self._exploit_parents(score, key)
      params, opt_state = jax.tree.map(lambda x: x[parent], (params, opt_state))
      copied = parent != members
      hp = {}
      for i, n in enumerate(self.bounds):
        factor = jax.random.choice(jax.random.fold_in(key, i + 1), jnp.asarray(self.perturb),
                                   (self.population,))
        new = jnp.clip(opt_state.hyperparams[n] * factor, lo[n], hi[n])
        hp[n] = jnp.where(copied, new, opt_state.hyperparams[n])
      return (params, self._with_hparams(opt_state, hp)), (used, score, parent)

    last = self.num_intervals - 1
    (params, opt_state), (used, scores, parents) = jax.lax.scan(
        interval, (params, opt_state), jnp.arange(last))
    final_used = {n: opt_state.hyperparams[n] for n in self.bounds}
    params, opt_state, score = train(members, jnp.int32(last), params, opt_state, data)
    test = jax.vmap(self._test, in_axes=(0, 0, None))(members, params, test_data)
    used = {n: jnp.concatenate([used[n], final_used[n][None]]) for n in self.bounds}
    return {"test_loss": test, "hparams": used, "parents": parents,
            "scores": jnp.concatenate([scores, score[None]])}

  def _exploit_parents(self, score, key):
    """Whom each member continues from: itself, or (bottom fraction) a random top member."""
    order = jnp.argsort(score)                 # non-finite scores (inf) rank last
    n = self.num_exploit
    winners = order[:n][jax.random.randint(key, (n,), 0, n)]
    return jnp.arange(self.population).at[order[self.population - n:]].set(winners)

  def run(self, init_hparams: dict | None = None) -> dict:
    """Runs the population; ``init_hparams`` ({name: [population]}) default to log-uniform draws.

    Returns numpy arrays: ``test_loss`` [population] (held out, final params), ``hparams``
    {name: [intervals, population]} (used during each interval), ``parents``
    [intervals - 1, population] (whom each member copied after each interval; itself if none),
    ``scores`` [intervals, population] (the ranking losses), and ``init_hparams``.
    """
    rng = np.random.default_rng(self.seed)
    init = {}
    for n, (lo, hi) in self.bounds.items():
      if init_hparams and n in init_hparams:
        init[n] = np.asarray(init_hparams[n], np.float32).reshape(-1)
      else:
        init[n] = np.exp(rng.uniform(np.log(lo), np.log(hi), self.population)).astype(np.float32)
      if init[n].shape != (self.population,):
        raise ValueError(f"init_hparams[{n!r}] must have {self.population} values.")
    on_cpu = jax.default_backend() == "cpu"
    opts = {"xla_backend_optimization_level": 0} if on_cpu else None
    out = jax.jit(self._program, compiler_options=opts)(
        {n: jnp.asarray(v) for n, v in init.items()}, self.task.data, self.task.test_data)
    out = jax.tree.map(np.asarray, out)
    out["init_hparams"] = init
    return out

  def lineage(self, out: dict, member: int) -> list[int]:
    """The member that owned ``member``'s run during each interval (first to last)."""
    owners = [int(member)]
    for parents in np.asarray(out["parents"])[::-1]:
      owners.append(int(parents[owners[-1]]))
    return owners[::-1]

  def replay(self, out: dict, member: int) -> float:
    """Retrains ``member``'s final run alone from the schedule; returns its held-out loss."""
    owners = self.lineage(out, member)
    hp = {n: np.asarray(out["hparams"][n]) for n in self.bounds}

    def program(data, test_data):
      params, opt_state = self._init(owners[0], {n: hp[n][0, owners[0]] for n in self.bounds})
      for k, owner in enumerate(owners):
        opt_state = self._with_hparams(opt_state, {n: hp[n][k, owner] for n in self.bounds})
        params, opt_state, _ = self._train(owner, k, params, opt_state, data)
      return self._test(member, params, test_data)

    return float(jax.jit(program)(self.task.data, self.task.test_data))

  @staticmethod
  def schedule_json(out: dict, bounds: dict) -> dict:
    """The replayable schedule as JSON: per interval, every member's hyperparameters and parent."""
    k = np.asarray(out["scores"]).shape[0]
    return {"format": "metalearn.pbt.v1", "bounds": {n: list(b) for n, b in bounds.items()},
            "intervals": [{"hparams": {n: np.asarray(out["hparams"][n][i]).tolist()
                                       for n in bounds},
                           "score": np.asarray(out["scores"][i]).tolist(),
                           "parent": (np.asarray(out["parents"][i]).tolist() if i < k - 1
                                      else None)} for i in range(k)],
            "test_loss": np.asarray(out["test_loss"]).tolist()}
