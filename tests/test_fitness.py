"""Self-improvement fitness (metalearn.meta.fitness) and the compiler options its programs get."""
import os
import sys

import jax
import numpy as np
import pytest

import metalearn.parallel as parallel
from metalearn.meta import population as pop_lib
from metalearn.meta import self_improve as si
from metalearn.meta.fitness import fitness_of_losses
from metalearn.meta.population import Population
from self_improve_helpers import VALID, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVEL0 = {"xla_backend_optimization_level": 0}


def test_fitness_of_losses_scores_progress_and_caps_divergence():
  losses = np.linspace(1.0, 0.1, 20).astype(np.float32)
  assert float(fitness_of_losses(losses, 1.0, 10.0)) < np.log(0.2)
  blown = losses.copy()
  blown[-1] = np.nan
  assert float(fitness_of_losses(blown, 1.0, 10.0)) == pytest.approx(np.log(10.0))
  assert float(fitness_of_losses(losses * 200, 1.0, 10.0)) == pytest.approx(np.log(10.0))


def test_fitness_floor_caps_each_task_and_decides_the_best():
  """With ``fitness_floor`` a task's fitness counts no lower than the floor, so one family
  driven to a ~0 training loss no longer outvotes the rest."""
  two = VALID + ({"kind": "linreg", "dim": 3, "seed": 5, "batch_size": 8},)
  mesh = parallel.make_mesh(2)
  config = tiny_config(eval_tasks=two, population_size=4, init="random", init_scale=0.3)
  pop = Population(config, mesh)
  thetas = jax.vmap(pop._init_theta)(jax.random.split(jax.random.key(1), 4))
  raw = pop.task_fitness(thetas)
  floor = float(np.median(raw))
  assert (raw < floor).any()   # so the floor has something to cap
  floored = Population(tiny_config(eval_tasks=two, population_size=4, init="random",
                                   init_scale=0.3, fitness_floor=floor), mesh).task_fitness(thetas)
  np.testing.assert_allclose(floored, np.maximum(raw, floor), rtol=1e-6)
  from metalearn.meta.selection import best_member
  task_fitness = np.array([[-12.0, -1.0], [-5.0, -2.0]])   # member 0 carried by one task
  assert best_member(task_fitness) == 0
  assert best_member(np.maximum(task_fitness, -5.0)) == 1


def test_fitness_on_a_cnn_validation_task_matches_each_member_alone(tmp_path):
  """A CNN meta-validation family (kernels differ per member, the seeds' batches are shared)
  hit a conv batching rule JAX lacks under shard_map: the whole run failed at generation 0."""
  cnn = {"kind": "cnn", "dataset": "digits", "hidden": [4], "activation": "relu",
         "batch_size": 4}
  config = tiny_config(eval_tasks=(cnn,) + VALID, population_size=4, fitness_horizon=3,
                       fitness_seeds=2, init="random", init_scale=0.1)
  pop = Population(config, parallel.make_mesh(2))
  thetas = jax.vmap(pop._init_theta)(jax.random.split(jax.random.key(0), 4))
  fit = pop.task_fitness(thetas)
  assert fit.shape == (4, 2) and np.all(np.isfinite(fit))
  assert len({round(float(x), 6) for x in fit[:, 0]}) == 4   # the members' rules differ
  alone = Population(tiny_config(**{**config, "population_size": 1}), parallel.make_mesh(1))
  for i in range(4):
    one = alone.task_fitness(jax.tree.map(lambda x: x[i:i + 1], thetas))
    np.testing.assert_allclose(one[0], fit[i], rtol=1e-5, atol=1e-6)


def test_per_task_fitness_horizons_score_each_task_at_its_own_horizon():
  """fitness_horizons gives each meta-validation task its own horizon (a CNN family can run
  shorter than the rest): each column equals that task scored alone at its horizon."""
  other = {"kind": "linreg", "dim": 5, "seed": 3, "batch_size": 8}
  config = tiny_config(eval_tasks=VALID + (other,), population_size=2, fitness_horizons=(4, 12),
                       init="random", init_scale=0.1)
  pop = Population(config, parallel.make_mesh(2))
  thetas = jax.vmap(pop._init_theta)(jax.random.split(jax.random.key(0), 2))
  fit = pop.task_fitness(thetas)
  for j, h in enumerate((4, 12)):
    same = Population(tiny_config(**{**config, "fitness_horizons": (), "fitness_horizon": h}),
                      parallel.make_mesh(2))
    np.testing.assert_allclose(fit[:, j], same.task_fitness(thetas)[:, j], rtol=1e-5, atol=1e-6)
  flat = Population(tiny_config(**{**config, "fitness_horizons": (), "fitness_horizon": 4}),
                    parallel.make_mesh(2)).task_fitness(thetas)
  assert not np.allclose(fit[:, 1], flat[:, 1])   # task 2's horizon did change its score
  for bad in ((4,), (4, 0), (4, 2.5)):
    with pytest.raises(ValueError, match="fitness_horizons must be empty .* one integer >= 1 per "
                                         "eval_task \\(2 tasks\\)"):
      si.validate(tiny_config(eval_tasks=config.eval_tasks, fitness_horizons=bad), 1)


def test_short_runs_compile_fast_and_long_recipes_compile_optimised():
  """On CPU LLVM level 0 compiles fast but runs a CNN's fitness 24x slower
  (benchmarks/fitness_compile.py): a tiny run keeps level 0, a long recipe gets XLA's defaults."""
  assert jax.default_backend() == "cpu"
  tiny = Population(tiny_config(), parallel.make_mesh(1))
  assert tiny._jit_options == LEVEL0 and tiny.fit._jit_options == LEVEL0
  sys.path.insert(0, os.path.join(REPO, "experiments"))
  recipe = si.load_config(os.path.join(REPO, "experiments", "self_improve_kinds.py"))
  assert pop_lib.fitness_calls(recipe) == 1 + recipe.num_generations * (
      1 + recipe.generation_steps // recipe.accept_every)
  long = Population(recipe, parallel.make_mesh(1))
  assert long._jit_options is None and long.fit._jit_options is None
  # One long fitness horizon alone is enough work to pay for the optimised compile.
  mixed = Population(tiny_config(num_generations=20, fitness_horizon=150), parallel.make_mesh(1))
  assert mixed._jit_options == LEVEL0 and mixed.fit._jit_options is None
