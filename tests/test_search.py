"""metalearn.search: spaces, batched training, studies on real SQLite files, workers, errors, PBT."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import optax
import optuna
import pytest
from optuna.trial import TrialState

from metalearn.search import (BatchRun, OptimizerTarget, Space, open_storage, open_study,
                              optimize, optimizer_family, run_search)
from metalearn.tasks import TaskSpec, make_task
from metalearn.tasks.training import train_grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINREG = {"kind": "linreg", "dim": 8, "batch_size": 32}
SPACE = {"learning_rate": ("log", 1e-4, 1.0), "weight_decay": ("log", 1e-6, 1e-1)}


def small_config(**kw):
  return {"name": "lin", "task": LINREG, "num_steps": 40, "space": SPACE, "trials": 6,
          "batch_size": 3, "num_reports": 2, **kw}


# -- spaces ----------------------------------------------------------------------------------------


def test_space_declared_and_function_agree():
  def fn(trial):
    return {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1.0, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)}
  assert Space(SPACE).signature == Space(fn).signature
  assert Space(SPACE).signature != Space({**SPACE, "warmup": ("float", 0.0, 0.3)}).signature
  grid = Space({"lr": ("log", 1e-3, 1e-1), "opt": ["adamw", "sgdm"], "n": ("int", 1, 3)}).grid(3)
  assert np.allclose(grid["lr"], [1e-3, 1e-2, 1e-1]) and grid["opt"] == ["adamw", "sgdm"]
  assert grid["n"] == [1, 2, 3]


@pytest.mark.parametrize("space, words", [
    ({}, "empty"), (lambda trial: {}, "empty"),
    ({"lr": ("log", 1e-1, 1e-3)}, "low"), ({"lr": ("log", 0.0, 1.0)}, "log-scaled"),
    ({"lr": ("cubic", 0, 1)}, "kind"), ({"opt": []}, "empty list"),
    (lambda trial: {"lr": trial.suggest_float("lr", 1.0, 0.1)}, "invalid"),
    (lambda trial: 3, "must return a dict"), (42, "function")])
def test_bad_spaces_are_rejected_by_name(space, words):
  with pytest.raises(ValueError, match=words):
    Space(space)


# -- batched training ------------------------------------------------------------------------------


def test_schedule_warms_up_then_decays_from_traced_scalars():
  import jax
  from metalearn.search import schedule
  lrs = jax.jit(lambda lr, w, d: jax.vmap(schedule(lr, w, d, 10))(np.arange(11)))(0.1, 0.2, 1.0)
  # step 0: half-way through a 2-step warmup; step 1: warm, cosine 10 % of the way down
  np.testing.assert_allclose(lrs[:2], [0.05, 0.1 * (1 - 0.5 * (1 - np.cos(np.pi * 0.1)))],
                             rtol=1e-5)
  assert lrs[10] == pytest.approx(0.0, abs=1e-7) and np.all(np.diff(lrs[1:]) <= 0)


def test_batch_run_matches_train_grid_and_drops_stopped_members():
  task = make_task(TaskSpec(**LINREG))
  lrs = [1e-3, 1e-2, 1e-1]
  run = BatchRun(task, optimizer_family("adamw", 40), 40, num_chunks=2)
  out = run({"learning_rate": lrs}, seeds=[0, 1])
  grid = train_grid(task, lambda lr: optax.adamw(lr, weight_decay=0.0), 40, lrs, [0, 1])
  np.testing.assert_allclose(out["test_loss"], grid["test_loss"].mean(1), rtol=1e-4)
  np.testing.assert_allclose(out["train_loss"], grid["train_loss"][:, :, 20:].mean((1, 2)),
                             rtol=1e-4)
  seen = []
  stopped = run({"learning_rate": lrs}, seeds=[0, 1],
                on_chunk=lambda step, losses, alive: (seen.append((step, losses.copy())),
                                                      losses > np.nanmin(losses))[1])
  assert [s for s, _ in seen] == [20]
  best = int(np.argmin(seen[0][1]))
  assert list(stopped["steps"]) == [40 if i == best else 20 for i in range(3)]
  assert stopped["test_loss"][best] == pytest.approx(out["test_loss"][best], rel=1e-4)


@pytest.mark.slow   # partitioning for 4 emulated devices compiles slowly on 2 CPU cores
def test_batch_run_sharded_over_devices_gives_the_same_numbers():
  from metalearn import parallel
  task = make_task(TaskSpec(**LINREG))
  lrs = [1e-3, 1e-2, 1e-1]
  stop = lambda step, losses, alive: losses > np.nanmin(losses)
  one = BatchRun(task, optimizer_family("adamw", 40), 40, num_chunks=2)
  four = BatchRun(task, optimizer_family("adamw", 40), 40, num_chunks=2,
                  mesh=parallel.make_mesh(4))   # 6 members padded to 8, then 2 padded to 4
  a = one({"learning_rate": lrs}, seeds=[0, 1], on_chunk=stop)
  b = four({"learning_rate": lrs}, seeds=[0, 1], on_chunk=stop)
  np.testing.assert_allclose(b["test_loss"], a["test_loss"], rtol=1e-4)
  np.testing.assert_array_equal(b["steps"], a["steps"])
  assert sorted(b["steps"]) == [20, 20, 40]


# -- studies ---------------------------------------------------------------------------------------


def test_search_writes_results_report_and_resumes(tmp_path):
  wd = str(tmp_path / "s")
  summary = run_search(small_config(pruner="median"), wd)
  results = json.load(open(os.path.join(wd, "results.json")))
  assert results == json.loads(json.dumps(summary))
  values = [t["value"] for t in results["trials"] if t["state"] == "complete"]
  assert results["best_value"] == min(values) and len(results["trials"]) == 6
  assert all(len(t["intermediate"]) >= 1 for t in results["trials"])
  for f in ("study.db", "report.md", "history.png", "intermediate.png", "importances.png"):
    assert os.path.getsize(os.path.join(wd, f)) > 0, f
  # Same study, larger budget: the six trials are kept and three are added.
  again = run_search(small_config(pruner="median", trials=9, sampler="random"), wd, report=False)
  assert [t["params"] for t in again["trials"][:6]] == [t["params"] for t in results["trials"]]
  assert len(again["trials"]) == 9


@pytest.mark.slow
def test_grid_and_cmaes_samplers_run(tmp_path):
  # A categorical optimizer: the batch of 4 trains as two programs (adamw, sgdm) of 2 trials.
  space = {"learning_rate": ("log", 1e-3, 1.0), "optimizer": ["adamw", "sgdm"]}
  grid = {"learning_rate": [1e-2, 1e-1], "optimizer": ["adamw", "sgdm"]}
  s = run_search(small_config(sampler="grid", grid=grid, space=space, trials=4, batch_size=4,
                              pruner="none"), str(tmp_path / "g"), report=False)
  assert sorted((t["params"]["learning_rate"], t["params"]["optimizer"])
                for t in s["trials"]) == [(a, b) for a in grid["learning_rate"]
                                          for b in grid["optimizer"]]
  value = {(t["params"]["learning_rate"], t["params"]["optimizer"]): t["value"]
           for t in s["trials"]}
  task = make_task(TaskSpec(**LINREG))
  for name, make in (("adamw", lambda lr: optax.adamw(lr, weight_decay=0.0)),
                     ("sgdm", lambda lr: optax.sgd(lr, momentum=0.9))):
    ref = train_grid(task, make, 40, [1e-2], [0])["test_loss"][0, 0]
    assert value[(1e-2, name)] == pytest.approx(float(ref), rel=1e-4), name
  s = run_search(small_config(sampler="cmaes", trials=4, batch_size=4, pruner="hyperband"),
                 str(tmp_path / "c"), report=False)
  assert s["states"].get("complete", 0) + s["states"].get("pruned", 0) == 4


def test_two_objectives_give_a_pareto_front(tmp_path):
  cfg = small_config(metric=("test_loss", "mean_train_loss"), pruner="none", trials=6,
                     batch_size=6, sampler="random")
  summary = run_search(cfg, str(tmp_path))
  front = summary["pareto_front"]
  values = {t["number"]: t["value"] for t in summary["trials"]}
  assert front and all(len(p["values"]) == 2 for p in front)
  for p in front:   # no trial dominates a member of the front
    assert not any(v[0] <= p["values"][0] and v[1] <= p["values"][1] and v != p["values"]
                   for v in values.values())
  assert os.path.getsize(tmp_path / "pareto.png") > 0
  with pytest.raises(ValueError, match="single-objective"):
    run_search({**cfg, "pruner": "median"}, str(tmp_path / "x"))


def _snapshot(folder):
  return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}


def test_bad_input_is_refused_and_nothing_is_overwritten(tmp_path):
  with pytest.raises(ValueError, match="outside the search space"):
    run_search(small_config(sampler="grid", grid={"learning_rate": [0.1], "weight_decay": [0.0]}),
               str(tmp_path / "a"))
  with pytest.raises(ValueError, match="unknown sampler 'bayes'"):
    run_search(small_config(sampler="bayes"), str(tmp_path / "a"))
  with pytest.raises(ValueError, match="empty"):
    run_search(small_config(space={}), str(tmp_path / "a"))
  with pytest.raises(ValueError, match="are not optimizers"):
    run_search(small_config(space={**SPACE, "optimizer": ["adamw", "adagrad"]}), str(tmp_path / "a"))
  with pytest.raises(ValueError, match="cannot set"):
    run_search(small_config(space={"learing_rate": ("log", 1e-3, 1.0)}), str(tmp_path / "a"))
  _write_config(tmp_path)
  from metalearn import cli
  assert cli.main(["search", "--config", str(tmp_path / "cfg.py"), "--workdir",
                   str(tmp_path / "a"), "--sampler", "bayes"]) == 2
  assert not os.path.exists(tmp_path / "a")
  with pytest.raises(ConnectionError, match="cannot reach storage"):
    run_search(small_config(), str(tmp_path / "b"), storage="sqlite:////no/such/dir/x.db")
  with pytest.raises(ConnectionError, match="cannot reach storage"):
    run_search(small_config(), str(tmp_path / "b"), storage="postgresql://u:p@127.0.0.1:9/db")
  assert not os.path.exists(tmp_path / "b")
  wd = str(tmp_path / "c")
  run_search(small_config(trials=2, pruner="none"), wd, report=False)
  before = _snapshot(wd)
  other = {"learning_rate": ("log", 1e-5, 1.0), "weight_decay": ("log", 1e-6, 1e-1)}
  with pytest.raises(ValueError, match="already exists with another search space"):
    run_search(small_config(space=other, trials=4), wd)
  with pytest.raises(ValueError, match="already exists to minimize"):
    open_study("lin", SPACE, workdir=wd, direction="maximize")
  assert _snapshot(wd) == before


def _worker(wd, *extra, trials=6, env_extra=None):
  cfg = os.path.join(os.path.dirname(wd), "cfg.py")
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1",
         "METALEARN_COMPILE_CACHE": "0", **(env_extra or {})}
  return subprocess.Popen([sys.executable, "-m", "metalearn.cli", "search", "--config", cfg,
                           "--workdir", wd, "--trials", str(trials), *extra], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _write_config(tmp_path, **kw):
  (tmp_path / "cfg.py").write_text(textwrap.dedent(f"""
      def get_config():
        return {small_config(**kw)!r}
      """))


def _query(db, sql, default):
  """``sql`` on the study's database; ``default`` while the worker has created the file but not
  yet Optuna's tables (a window the polling below can hit)."""
  try:
    with sqlite3.connect(db) as con:
      return con.execute(sql).fetchall()
  except sqlite3.OperationalError as e:
    if "no such table" in str(e):
      return default
    raise


def _states(db):
  return [r[0] for r in _query(db, "select state from trials order by number", [])]


def _running_params(db):
  return _query(db, "select count(*) from trial_params p join trials t on p.trial_id = "
                    "t.trial_id where t.state = 'RUNNING'", [(0,)])[0][0]


@pytest.mark.slow   # a worker process that compiles on its own (about a minute on 2 loaded cores)
def test_sigkill_loses_no_completed_trial(tmp_path):
  _write_config(tmp_path, batch_size=1, pruner="none", num_steps=400)
  wd = str(tmp_path / "s")
  proc = _worker(wd, trials=50)
  db = os.path.join(wd, "study.db")
  deadline = time.time() + 240
  while time.time() < deadline:
    if os.path.exists(db) and _states(db).count("COMPLETE") >= 2 and _running_params(db) == 2:
      break  # killed while training a trial whose parameters are stored
    if proc.poll() is not None:
      pytest.fail(f"the worker ended early:\n{proc.stdout.read()}")
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  states = _states(db)
  assert states.count("COMPLETE") >= 2 and "RUNNING" in states, states
  storage = open_storage("sqlite:///" + db)
  done = {t.number: (t.params, t.value) for t in
          optuna.load_study(study_name="lin", storage=storage).trials if t.state.is_finished()}
  study = open_study("lin", SPACE, workdir=wd, sampler="random")   # recovers the killed trial
  killed = [t for t in study.trials if t.state == TrialState.FAIL]
  assert len(killed) == 1 and len(killed[0].params) == 2
  assert study.trials[-1].state == TrialState.WAITING
  assert study.trials[-1].params == killed[0].params   # re-queued with the same parameters
  target = OptimizerTarget(LINREG, num_steps=40, num_reports=1)
  optimize(study, SPACE, target, n_trials=len(done) + 2, batch_size=2)
  after = {t.number: (t.params, t.value) for t in study.trials}
  assert all(after[n] == v for n, v in done.items())
  assert study.trials[-2].params == killed[0].params   # the re-queued trial ran
  assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == len(done) + 2


@pytest.mark.slow   # two worker processes
def test_two_workers_share_one_study(tmp_path):
  _write_config(tmp_path, batch_size=2, pruner="none")
  wd = str(tmp_path / "s")
  open_study("lin", SPACE, workdir=wd)   # both workers then find the study
  procs = [_worker(wd, trials=8) for _ in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  study = optuna.load_study(study_name="lin", storage="sqlite:///" + os.path.join(wd, "study.db"))
  complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
  assert len(complete) == 8
  assert len({t.user_attrs["metalearn.worker"] for t in complete}) == 2
  assert len({tuple(t.params.values()) for t in complete}) == 8


# -- population-based training ---------------------------------------------------------------------


def test_pbt_exploits_explores_and_replays_on_one_or_eight_devices():
  from metalearn import parallel
  from metalearn.search import PBT
  task = make_task(TaskSpec(**LINREG))
  lrs = np.geomspace(1e-3, 0.3, 8)
  kw = dict(num_steps=30, num_intervals=3, bounds={"learning_rate": (1e-4, 1.0)}, population=8)
  sharded = PBT(task, "adamw", **kw)
  assert sharded.sharded and sharded.mesh.devices.size == 8
  out = sharded.run({"learning_rate": lrs})
  hp, parents = out["hparams"]["learning_rate"], out["parents"]
  np.testing.assert_allclose(hp[0], lrs, rtol=1e-6)
  for k in range(2):
    moved = np.flatnonzero(parents[k] != np.arange(8))
    assert len(moved) == 2          # the bottom quarter
    order = np.argsort(out["scores"][k])
    assert set(moved) == set(order[-2:]) and set(parents[k][moved]) <= set(order[:2])
    ratio = hp[k + 1, moved] / hp[k, parents[k][moved]]
    assert np.all(np.isclose(ratio, 0.8, rtol=1e-5) | np.isclose(ratio, 1.25, rtol=1e-5)
                  | (hp[k + 1, moved] == 1.0))
  best = int(np.argmin(out["test_loss"]))
  assert sharded.replay(out, best) == pytest.approx(out["test_loss"][best], rel=1e-4)
  single = PBT(task, "adamw", mesh=parallel.make_mesh(1), **kw).run({"learning_rate": lrs})
  np.testing.assert_allclose(single["test_loss"], out["test_loss"], rtol=1e-4)
  np.testing.assert_array_equal(single["parents"], out["parents"])


def test_pbt_search_writes_schedule_and_lineage(tmp_path):
  cfg = small_config(mode="pbt", num_steps=20, space={"learning_rate": ("log", 1e-3, 1.0)},
                     pbt={"population": 4, "num_intervals": 2})
  summary = run_search(cfg, str(tmp_path))
  schedule = json.load(open(tmp_path / "pbt.json"))
  assert len(schedule["intervals"]) == 2 and len(schedule["intervals"][0]["parent"]) == 4
  assert summary["best_value"] == min(summary["test_loss"])
  assert os.path.getsize(tmp_path / "lineage.png") > 0
  with pytest.raises(ValueError, match="bounds"):
    run_search({**cfg, "space": {"warmup": ("float", 0.1, 0.2)}}, str(tmp_path / "x"))
  with pytest.raises(ValueError, match="multiple of num_intervals"):
    run_search({**cfg, "pbt": {"population": 4, "num_intervals": 3}}, str(tmp_path / "x"))
  assert not os.path.exists(tmp_path / "x")


# -- the meta-training config as a target ----------------------------------------------------------


@pytest.mark.slow   # two short meta-training runs
def test_meta_config_search_scores_held_out_evaluation(tmp_path):
  overrides = {"task_specs": [LINREG], "eval_tasks": [{**LINREG, "seed": 1}],
               "num_outer_steps": 2, "min_horizon": 10, "max_horizon": 20, "eval_horizon": 20,
               "checkpoint_every": 2, "log_every": 1}
  cfg = {"name": "meta", "target": "meta", "meta_config": None, "meta_overrides": overrides,
         "space": {"outer_lr": ("log", 1e-4, 1e-2), "truncation_length": ("int", 5, 10)},
         "trials": 2, "batch_size": 2, "pruner": "none"}
  summary = run_search(cfg, str(tmp_path), report=False)
  assert summary["states"] == {"complete": 2}
  for t in summary["trials"]:
    folder = tmp_path / "trials"
    evals = [json.load(open(folder / d / "eval.json")) for d in os.listdir(folder)]
    assert any(abs(np.mean([r["rule"] / r["adam_1e-3"] for r in e.values()]) - t["value"]) < 1e-9
               for e in evals)
  with pytest.raises(ValueError, match="not meta-training config keys"):
    run_search({**cfg, "space": {"outer_learning_rate": ("log", 1e-4, 1e-2)}}, str(tmp_path / "x"))
