"""Evaluation: the speedup metric, suites, run_evaluation + report on the tiny suite, the CLI."""
import json
import os

import numpy as np
import pytest

from metalearn import cli
from metalearn.evaluate import SUITES, get_suite, run_evaluation, speedup, write_report
from metalearn.evaluate import metrics
from metalearn.tasks import TaskSpec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decay(steps, rate=0.01):
  return np.exp(-rate * np.asarray(steps, np.float64)) + 0.1


# -- speedup ---------------------------------------------------------------------------------------


def test_speedup_twice_as_fast():
  t = np.arange(1000)
  base, rule = _decay(t), _decay(2 * t)
  assert speedup(rule, base, win=1) == pytest.approx(2.0, rel=0.01)
  assert speedup(rule, base) == pytest.approx(2.0, rel=0.05)  # default 5% smoothing


def test_speedup_equal_and_never_reached():
  base = _decay(np.arange(500))
  assert speedup(base, base) == 1.0
  assert speedup(base + 0.05, base) == 0.0
  rule = base.copy()
  rule[100:] = np.nan  # a diverged rule never reaches anything afterwards
  assert speedup(rule, base) == 0.0
  assert np.isnan(speedup(base, np.full(500, np.inf)))  # nothing to reach


def test_speedup_non_monotone_by_hand():
  base = [5.0, 4.0, 3.0, 2.0, 1.0, 2.0, 3.0]  # target: its final 3.0, first reached at step 3
  assert speedup([5.0, 3.0, 9.0, 9.0, 9.0, 9.0, 9.0], base, win=1) == pytest.approx(3 / 2)
  assert speedup([5.0, 4.0, 3.5, 3.5, 3.5, 3.5, 3.1], base, win=1) == 0.0


def test_speedup_noisy_curves():
  rng = np.random.default_rng(0)
  t = np.arange(2000)
  noise = lambda: np.exp(0.3 * rng.normal(size=len(t)))
  base, rule = _decay(t, 0.003) * noise(), _decay(3 * t, 0.003) * noise()
  assert speedup(rule, base) == pytest.approx(3.0, rel=0.25)
  assert speedup(base, rule) < 0.5


def test_smooth_tail_and_divergence():
  c = np.array([1.0, 2.0, 3.0, 4.0])
  np.testing.assert_allclose(metrics.smooth(c, 2), [1.0, 1.5, 2.5, 3.5])
  assert np.isinf(metrics.smooth([1.0, np.nan, 1.0], 1)[2])
  curves = np.array([[3.0] * 9 + [1.0], [3.0] * 9 + [5.0], [3.0] * 9 + [np.nan]])
  np.testing.assert_array_equal(metrics.diverged(curves, initial=[2.0, 4.0, 9.0]),
                                [False, True, True])
  assert metrics.tune(curves[:, None, :]) == 0


# -- suites ----------------------------------------------------------------------------------------


def test_suites():
  assert set(SUITES) == {"tiny", "demo", "in_distribution", "out_of_distribution"}
  for name in SUITES:
    for spec, steps in get_suite(name):
      assert isinstance(spec, TaskSpec) and isinstance(steps, int) and steps > 0
  ind = get_suite("in_distribution")
  assert {s.kind for s, _ in ind} == {"image_mlp", "cnn"}
  assert {s.dataset for s, _ in ind} <= {"digits", "mnist5k_8"}
  assert all(200 <= n <= 1000 for _, n in ind)
  ood = get_suite("out_of_distribution")
  assert {"image_mlp", "cnn", "char_lm", "autoencoder", "linreg"} <= {s.kind for s, _ in ood}
  assert sum(n >= 5000 for _, n in ood) >= 2
  with pytest.raises(ValueError, match="tiny"):
    get_suite("nope")


# -- run_evaluation, report and the CLI on the tiny suite ------------------------------------------


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("eval"))
  assert cli.main(["evaluate", "--optimizer", "init:mlp_lopt", "--suite", "tiny",
                   "--workdir", workdir]) == 0
  return workdir


def test_results_json(evaluated):
  with open(os.path.join(evaluated, "results.json")) as f:
    res = json.load(f)
  assert res["optimizer"] == "init:mlp_lopt" and res["suite"] == "tiny" and res["complete"]
  assert res["seeds"] >= 2
  assert [t["id"] for t in res["tasks"]] == [f"{s.name}@{n}" for s, n in get_suite("tiny")]
  for t in res["tasks"]:
    assert set(t["optimizers"]) == {"rule", "adam", "adamw", "sgdm"}
    for name, entry in t["optimizers"].items():
      assert np.isfinite(entry["final_train_loss"]) and np.isfinite(entry["final_test_loss"])
      assert 0 < len(entry["curve"]["step"]) == len(entry["curve"]["loss"]) <= 200
      with np.load(os.path.join(evaluated, t["runs"][name])) as runs:
        shape = runs["train_loss"].shape
      assert shape[1:] == (res["seeds"], t["num_steps"])
      if name != "rule":
        assert len(entry["lrs"]) >= 6 and shape[0] == len(entry["lrs"])
        assert entry["best_lr"] in entry["lrs"]
    for name in ("adam", "adamw", "sgdm"):
      assert t["speedup"][name] >= 0
  s = res["summary"]
  assert s["num_tasks"] == 2 and "median_speedup_vs_adam" in s
  assert set(s["vs"]) == {"adam", "adamw", "sgdm"}
  assert 0 <= s["vs"]["adam"]["reached_fraction"] <= 1


def test_report(evaluated, capsys):
  assert cli.main(["report", evaluated]) == 0
  path = capsys.readouterr().out.strip().splitlines()[-1]
  assert path == os.path.join(evaluated, "report.md")
  text = open(path).read()
  assert "| task | steps | learned rule |" in text and "median speedup" in text
  assert "linreg_d8_s0" in text
  images = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
  assert len(images) >= 2
  import matplotlib.image
  for rel in images:
    assert not os.path.isabs(rel)
    with open(os.path.join(evaluated, rel), "rb") as f:
      assert f.read(8) == PNG_SIGNATURE
    assert matplotlib.image.imread(os.path.join(evaluated, rel)).ndim == 3


def test_rerun_same_optimizer_reuses_runs(evaluated):
  res = run_evaluation("init:mlp_lopt", "tiny", evaluated, progress=False)
  assert res["complete"] and res["elapsed_s"] < 10  # every grid of runs came from the cache


def test_other_optimizer_does_not_overwrite(evaluated):
  path = os.path.join(evaluated, "results.json")
  before = open(path).read()
  with pytest.raises(ValueError, match="another --workdir"):
    run_evaluation("init:adam", "tiny", evaluated)
  with pytest.raises(ValueError, match="another --workdir"):
    run_evaluation("init:mlp_lopt", "demo", evaluated)
  assert open(path).read() == before


@pytest.mark.parametrize("optimizer, match", [
    ("pretrained:no_such_rule", "no_such_rule"),
    ("init:no_such_rule", "init:RULE"),
    ("/no/such/dir", "meta-train workdir"),
])
def test_bad_optimizer(tmp_path, optimizer, match):
  with pytest.raises(ValueError, match=match):
    run_evaluation(optimizer, "tiny", str(tmp_path))
  assert not os.path.exists(tmp_path / "results.json")


def test_cli_errors(tmp_path, capsys):
  assert cli.main(["evaluate", "--optimizer", "init:mlp_lopt", "--suite", "nope",
                   "--workdir", str(tmp_path)]) == 2
  assert "unknown suite 'nope'" in capsys.readouterr().err
  assert cli.main(["report", str(tmp_path)]) == 2
  assert "no results.json" in capsys.readouterr().err
  with pytest.raises(FileNotFoundError):
    write_report(str(tmp_path))
