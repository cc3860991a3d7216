"""Architecture search (metalearn.search.nas*) and campaigns (metalearn.search.campaign)."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from metalearn import cli
from metalearn.search import campaign as campaign_lib
from metalearn.search import nas
from metalearn.search.nas_report import pareto_front, write_nas_report
from metalearn.search.nas_space import (ArchFamily, ArchSpace, arch_key, cnn_family, make_space,
                                        mlp_family, transformer_family)
from metalearn.search.nas_train import Trainer, split_validation
from metalearn.tasks import TaskSpec, make_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = {"mlp": {"depths": [1, 2], "widths": [8, 16], "activations": ["relu", "tanh"]}}


# -- tasks: accuracy and kernel size ---------------------------------------------------------------

def test_kernel_size_is_in_the_model_and_left_out_of_default_specs():
  spec3 = TaskSpec(kind="cnn", dataset="digits", hidden=(4,))
  spec5 = TaskSpec(kind="cnn", dataset="digits", hidden=(4,), kernel_size=5)
  assert "kernel_size" not in spec3.to_dict() and spec3.name == "cnn_digits_4_relu_b128"
  assert spec5.to_dict()["kernel_size"] == 5 and "_k5" in spec5.name
  assert TaskSpec.from_dict(spec5.to_dict()) == spec5
  p3, p5 = make_task(spec3).num_params(), make_task(spec5).num_params()
  assert p5 - p3 == (25 - 9) * 4   # one conv of 1 -> 4 channels, 5x5 instead of 3x3
  with pytest.raises(ValueError, match="kernel_size"):
    TaskSpec(kind="cnn", dataset="digits", kernel_size=0)


def test_accuracy_of_classifiers_and_a_clear_error_for_others():
  task = make_task(TaskSpec(kind="image_mlp", dataset="digits", hidden=(8,)))
  params = task.init(jax.random.key(0))
  acc = float(task.accuracy(params, task.test_data))
  logits = task.model(params)(task.test_data["x"])
  assert acc == pytest.approx(float(np.mean(np.argmax(logits, -1) == task.test_data["y"])))
  quad = make_task(TaskSpec(kind="quadratic", dim=3))
  with pytest.raises(ValueError, match="not a classifier"):
    quad.accuracy(quad.init(jax.random.key(0)), quad.data)


# -- spaces ----------------------------------------------------------------------------------------

def test_spaces_map_every_candidate_to_a_task_spec():
  space = ArchSpace([mlp_family(), cnn_family(), transformer_family(heads=(1, 2))])
  archs = space.enumerate()
  assert len(archs) == space.size == 36 + 12 + 8 and len({arch_key(a) for a in archs}) == len(archs)
  kinds = {space.to_spec(a, "digits", 32).kind for a in archs if a["family"] != "transformer"}
  assert kinds == {"image_mlp", "cnn", "cnn_norm"}
  cnn = space.to_spec({"family": "cnn", "channels": (8, 16), "kernel": 5, "norm": "group",
                       "activation": "relu"}, "digits", 32)
  assert (cnn.kind, cnn.hidden, cnn.kernel_size) == ("cnn_norm", (8, 16), 5)
  lm = space.to_spec({"family": "transformer", "depth": 2, "width": 64, "heads": 2}, "", 16)
  assert (lm.kind, lm.num_layers, lm.d_model, lm.num_heads) == ("char_lm", 2, 64, 2)
  rng = np.random.default_rng(0)
  for _ in range(50):
    a = space.sample(rng)
    child = space.mutate(a, rng)
    space.check(child)
    assert child != a
    if child["family"] == a["family"]:   # exactly one choice changed
      assert sum(child[k] != a[k] for k in a) == 1


def test_bad_spaces_and_strategies_fail_clearly():
  with pytest.raises(ValueError, match="empty"):
    ArchSpace([])
  with pytest.raises(ValueError, match="non-empty list"):
    mlp_family(widths=())
  with pytest.raises(ValueError, match="unknown families"):
    make_space({"resnet": {}})
  with pytest.raises(ValueError, match="unknown search strategy 'bayes'"):
    nas.make_strategy("bayes", make_space(SPACE))
  with pytest.raises(ValueError, match="must be one of"):
    make_space(SPACE).check({"family": "mlp", "depth": 9, "width": 8, "activation": "relu"})


# -- strategies and the search loop, on a known objective ------------------------------------------

def _objective(arch):   # a smooth function of the choices, best at depth 3, width 256, gelu
  return (arch["depth"] / 3 + np.log2(arch["width"]) / 8
          + {"relu": 0.2, "tanh": 0.0, "gelu": 0.3}[arch["activation"]]) / 2.3


class _Scored:   # scores a spec by the objective (what a trainer returns), counting calls
  def __init__(self, space):
    self.space, self.calls = space, []

  def __call__(self, spec):
    arch = {"family": "mlp", "depth": len(spec.hidden), "width": spec.hidden[0],
            "activation": spec.activation}
    self.calls.append(arch_key(arch))
    return {"val_accuracy": _objective(arch), "num_params": sum(spec.hidden), "steps": 10}


@pytest.mark.parametrize("name", nas.STRATEGIES)
def test_strategies_search_without_retraining_and_beat_their_start(name):
  space = ArchSpace([mlp_family(depths=(1, 2, 3), widths=(16, 32, 64, 128, 256))])
  kwargs = {"population": 6, "sample": 3} if name == "evolution" else (
      {"n_startup_trials": 6} if name == "tpe" else {})
  trainer = _Scored(space)
  history = nas.search(space, nas.make_strategy(name, space, seed=1, **kwargs), trainer, 20,
                       dataset="digits", batch_size=8)
  assert len(history) == 20 and len(set(trainer.calls)) == 20   # nothing trained twice
  assert [r["cum_steps"] for r in history] == list(range(10, 210, 10))
  assert history[-1]["best_val_accuracy"] == max(r["val_accuracy"] for r in history)
  assert history[-1]["best_val_accuracy"] >= max(r["val_accuracy"] for r in history[:6])
  if name != "random":   # guided strategies sample better than the space's average
    average = np.mean([_objective(a) for a in space.enumerate()])
    assert np.mean([r["val_accuracy"] for r in history[10:]]) > average + 0.05


def test_search_resumes_from_history_and_stops_at_the_space_size():
  space = make_space(SPACE)   # 8 architectures
  first = nas.search(space, nas.make_strategy("evolution", space, population=3, sample=2),
                     _Scored(space), 3, dataset="digits", batch_size=8)
  trainer = _Scored(space)
  full = nas.search(space, nas.make_strategy("evolution", space, population=3, sample=2),
                    trainer, 20, dataset="digits", batch_size=8, history=first)
  assert len(full) == 8 and full[:3] == first and len(trainer.calls) == 5
  assert not set(trainer.calls) & {arch_key(r["arch"]) for r in first}
  with pytest.raises(ValueError, match="budget"):
    nas.search(space, nas.make_strategy("random", space), trainer, 0, dataset="d", batch_size=8)


def test_report_pareto_front_and_files(tmp_path):
  h = [{"arch": {"family": "mlp", "w": i}, "num_params": p, "val_accuracy": a, "cum_steps": 10 * i,
        "best_val_accuracy": a, "learning_rate": 0.0}
       for i, (p, a) in enumerate([(10, 0.5), (20, 0.4), (30, 0.7), (40, 0.7), (50, 0.9)], 1)]
  assert [r["num_params"] for r in pareto_front(h)] == [10, 30, 50]
  path = write_nas_report({"learned": h, "adam": h}, str(tmp_path))
  text = open(path).read()
  assert "1.00x fewer inner steps" in text and "Pareto front, adam" in text
  assert os.path.getsize(tmp_path / "pareto.png") > 1000
  summary = json.load(open(tmp_path / "summary.json"))
  assert summary["sides"]["learned"]["best"]["val_accuracy"] == 0.9


# -- training candidates for real ------------------------------------------------------------------

def test_trainers_count_steps_and_score_on_held_out_validation():
  task = make_task(TaskSpec(kind="image_mlp", dataset="digits", hidden=(16,), batch_size=32))
  train, val = split_validation(task.data, 0.2)
  n = task.data["x"].shape[0]
  assert train["x"].shape[0] + val["x"].shape[0] == n and val["x"].shape[0] == round(0.2 * n)
  spec = task.spec
  adam = Trainer.adam([1e-3, 3e-2], num_steps=60, seeds=(0, 1))(spec)
  learned = Trainer.learned("pretrained:default", num_steps=60)(spec)
  assert adam["steps"] == 2 * 2 * 60 and learned["steps"] == 60
  assert adam["learning_rate"] == 3e-2 and len(adam["val_accuracy_per_lr"]) == 2
  assert adam["val_accuracy"] == max(adam["val_accuracy_per_lr"])
  for r in (adam, learned):   # well above chance (10 classes) after 60 steps
    assert 0.5 < r["val_accuracy"] <= 1.0 and 0.5 < r["test_accuracy"] <= 1.0
    assert r["num_params"] == task.num_params()


# -- campaigns -------------------------------------------------------------------------------------

TINY = {"name": "tiny", "dataset": "digits", "space": SPACE, "strategy": "random", "budget": 2,
        "num_steps": 10, "batch_size": 16, "compare_adam": False, "final_steps": 10,
        "final_lrs": (1e-2,), "final_seeds": (0,)}


def test_campaign_runs_skips_when_done_and_resumes_an_interrupted_search(tmp_path, capsys):
  wd = str(tmp_path / "c")
  out = campaign_lib.run_campaign(TINY, wd, progress=False)
  cands = os.path.join(wd, "search", "learned", "candidates.json")
  first = json.load(open(cands))
  assert len(first) == 2 and out["search"]["sides"]["learned"]["total_steps"] == 20
  assert set(out["final"]["runs"]) == {"learned/rule", "learned/adamw"}
  assert os.path.isfile(os.path.join(wd, "report", "report.md"))
  assert len(open(os.path.join(wd, "search", "learned", "metrics.jsonl")).readlines()) == 2
  stamp = os.path.getmtime(cands)
  again = campaign_lib.run_campaign(TINY, wd, progress=False)     # everything done: skipped
  assert again["search"] == out["search"] and os.path.getmtime(cands) == stamp
  assert capsys.readouterr().out.count("already done") == 4
  # What a kill during the search leaves: one candidate recorded, no done markers from there on.
  for stage in ("search/learned", "search", "final", "report"):
    os.remove(os.path.join(wd, stage, "done.json"))
  json.dump(first[:1], open(cands, "w"))
  resumed = campaign_lib.run_campaign({**TINY, "budget": 2}, wd, progress=False)
  hist = json.load(open(cands))
  assert hist[0] == first[0] and len(hist) == 2 and resumed["search"]["sides"]["learned"][
      "candidates"] == 2


def test_campaign_bad_input_fails_before_writing(tmp_path):
  wd = str(tmp_path / "c")
  with pytest.raises(ValueError, match="unknown stages \\['serch'\\]"):
    campaign_lib.run_campaign({**TINY, "stages": ("rule", "serch")}, wd)
  with pytest.raises(ValueError, match="unknown search strategy"):
    campaign_lib.run_campaign({**TINY, "strategy": "grid"}, wd)
  with pytest.raises(ValueError, match="empty"):
    campaign_lib.run_campaign({**TINY, "space": {}}, wd)
  with pytest.raises(ValueError, match="unknown keys"):
    campaign_lib.run_campaign({**TINY, "budjet": 3}, wd)
  assert not os.path.exists(wd)
  with pytest.raises(ValueError, match="stage rule is not done"):
    campaign_lib.run_campaign(TINY, wd, stages=["search"])
  campaign_lib.run_campaign(TINY, wd, stages=["rule"], progress=False)
  with pytest.raises(ValueError, match="another config"):
    campaign_lib.run_campaign({**TINY, "budget": 5}, wd, stages=["rule"])
  cfg = tmp_path / "bad.py"
  cfg.write_text("def get_config():\n  return {'strategy': 'annealing'}\n")
  assert cli.main(["campaign", "--config", str(cfg), "--workdir", str(tmp_path / "d")]) == 2


@pytest.mark.slow
def test_campaign_cli_killed_mid_search_resumes(tmp_path):
  cfg = tmp_path / "c.py"
  cfg.write_text(f"def get_config():\n  return {dict(TINY, budget=4)!r}\n")
  wd = tmp_path / "w"
  cmd = [sys.executable, "-m", "metalearn.cli", "campaign", "--config", str(cfg), "--workdir",
         str(wd)]
  env = {**os.environ, "PYTHONPATH": ROOT}
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  cands = wd / "search" / "learned" / "candidates.json"
  deadline = time.time() + 300
  while time.time() < deadline and not (cands.exists() and len(json.loads(cands.read_text())) >= 1):
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed = json.loads(cands.read_text())
  assert 1 <= len(killed) < 4 and not (wd / "search" / "done.json").exists()
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "stage rule already done" in out.stdout
  hist = json.loads(cands.read_text())
  assert len(hist) == 4 and hist[:len(killed)] == killed
  assert (wd / "report" / "report.md").exists()


@pytest.mark.slow   # ~110 s on 2 loaded cores: meta-training compiles its outer step
def test_campaign_meta_trains_its_rule_then_searches_with_it(tmp_path):
  tiny = {"task_specs": ({"kind": "image_mlp", "dataset": "digits", "hidden": (8,),
                          "batch_size": 16},),
          "population_per_task": 2, "truncation_length": 5, "min_horizon": 10, "max_horizon": 20,
          "num_outer_steps": 2, "checkpoint_every": 1, "eval_horizon": 10, "progress": False,
          "num_devices": 1}
  config = {**TINY, "budget": 1, "meta_train": {"config": None, "overrides": tiny}}
  wd = str(tmp_path / "c")
  out = campaign_lib.run_campaign(config, wd, stages=["rule", "search"], progress=False)
  assert out["rule"]["source"] == os.path.abspath(os.path.join(wd, "rule"))
  assert out["rule"]["outer_steps"] == 2
  assert os.path.isfile(os.path.join(wd, "rule", "metrics.jsonl"))
  assert out["search"]["sides"]["learned"]["candidates"] == 1 and out["final"] is None


def test_campaign_configs_in_experiments_load_and_check():
  import glob
  from metalearn.search import campaign
  root = os.path.join(os.path.dirname(__file__), "..", "experiments")
  paths = sorted(glob.glob(os.path.join(root, "campaign_*.py")))
  assert paths
  for path in paths:
    campaign.check_config(campaign.load_config(path))
