"""Evaluation: metrics, baselines, suites, run_evaluation + report on the tiny suite, the CLI,
and what happens when the workdir cannot be written."""
import glob
import json
import os
import stat

import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import cli
from metalearn.evaluate import (BASELINES, SUITES, WorkdirError, get_suite, run_evaluation,
                                speedup, summary_text, trials_to_match, write_report)
from metalearn.evaluate import baselines, files, metrics, summary
from metalearn.evaluate.suites import OOD_REASONS, SuiteTask
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


def test_trials_to_match_by_hand():
  finals = [5.0, 2.0, 1.0, 1.5, np.nan, 3.0, 9.0]   # 7 learning rates, one diverged
  assert trials_to_match(finals, 1.0) == 7.0          # only the best one matches
  assert trials_to_match(finals, 2.0) == pytest.approx(7 / 3)
  assert trials_to_match(finals, 100.0) == pytest.approx(7 / 6)  # the diverged one never matches
  assert trials_to_match(finals, 0.5) == np.inf
  curves = np.stack([np.full((2, 10), 3.0), np.full((2, 10), 1.0)])
  curves[0, 1, -1] = np.nan
  np.testing.assert_array_equal(metrics.final_losses(curves), [np.inf, 1.0])


# -- baselines -------------------------------------------------------------------------------------


def test_baselines():
  assert BASELINES == ("adam", "adamw", "adamw_cosine", "sgdm")
  adam = next(b for b in baselines.TUNED if b.name == "adam")
  assert adam.lrs[baselines.lr_index(adam.lrs, baselines.DEFAULT.lr)] == pytest.approx(1e-3)
  with pytest.raises(ValueError, match="not on the grid"):
    baselines.lr_index(adam.lrs, 2e-3)
  lr = jnp.float32(0.1)   # traced in the grid: the schedule must not branch on it
  schedule = baselines.warmup_cosine(lr, 1000)
  assert float(schedule(0)) == 0.0
  assert float(schedule(50)) == pytest.approx(0.1)            # end of the 5% warmup
  assert float(schedule(25)) == pytest.approx(0.05)
  assert float(schedule(525)) == pytest.approx(0.05, rel=1e-3)  # half-way through the cosine
  assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-7)


# -- suites ----------------------------------------------------------------------------------------


def test_suites():
  assert set(SUITES) == {"tiny", "demo", "in_distribution", "out_of_distribution"}
  for name in SUITES:
    for spec, steps in get_suite(name):
      assert isinstance(spec, TaskSpec) and isinstance(steps, int) and steps > 0
    ids = [item.id for item in get_suite(name)]
    assert len(set(ids)) == len(ids)
  ind = get_suite("in_distribution")
  assert {s.kind for s, _ in ind} == {"image_mlp", "cnn"}
  assert {s.dataset for s, _ in ind} <= {"digits", "mnist5k_8"}
  assert all(200 <= n <= 1000 for _, n in ind)
  ood = get_suite("out_of_distribution")
  assert len(ood) >= 14
  kinds = {s.kind for s, _ in ood}
  assert {"image_mlp", "cnn", "char_lm", "autoencoder", "linreg"} <= kinds
  # Model kinds that no meta-training recipe uses (image MLPs, CNNs, transformers, autoencoders).
  assert len(kinds - {"image_mlp", "cnn", "char_lm", "autoencoder", "linreg", "quadratic"}) >= 3
  assert {"breast_cancer", "wine"} & {s.dataset for s, _ in ood}
  assert max(s.d_model for s, _ in ood if s.kind == "char_lm") >= 2 * 64   # a wider transformer
  assert sum(n >= 10000 for _, n in ood) >= 2   # 10x the meta-training horizons (<= 1,000)
  assert all(OOD_REASONS.get(item.id) for item in ood)
  with pytest.raises(ValueError, match="tiny"):
    get_suite("nope")


def test_classify_against_recorded_meta_training_tasks():
  info = {"task_specs": [TaskSpec("image_mlp", dataset="digits", hidden=(64, 64)).to_dict()],
          "train_horizon": [100, 1000]}
  def inside(spec, n=500):
    return summary.classify(SuiteTask(spec, n), "out_of_distribution", info)
  mlp = lambda hidden, dataset="digits": TaskSpec("image_mlp", dataset=dataset, hidden=hidden)
  assert inside(mlp((32,)))["inside"] is True
  assert inside(mlp((32,)))["by"] == "rule's meta-training tasks"
  assert "wider" in inside(mlp((128,)))["why"] and not inside(mlp((128,)))["inside"]
  assert "deeper" in inside(mlp((32,) * 3))["why"]
  assert "dataset mnist5k" in inside(mlp((32,), "mnist5k"))["why"]
  assert "kind cnn_norm" in inside(TaskSpec("cnn_norm", dataset="digits"))["why"]
  assert "horizon 5000" in inside(mlp((32,)), 5000)["why"]
  # No recorded tasks: the suite's design decides.
  by_design = summary.classify(SuiteTask(mlp((32,)), 500), "out_of_distribution", {})
  assert by_design["inside"] is False and by_design["by"] == "suite design"
  assert summary.classify(SuiteTask(mlp((32,)), 500), "tiny", {})["inside"] is None


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
  assert res["cache"] == {"hits": 0, "misses": 2 * (1 + len(BASELINES))}
  assert [t["id"] for t in res["tasks"]] == [f"{s.name}@{n}" for s, n in get_suite("tiny")]
  for t in res["tasks"]:
    assert set(t["optimizers"]) == {"rule", "default", *BASELINES}
    for name, entry in t["optimizers"].items():
      assert np.isfinite(entry["final_train_loss"]) and np.isfinite(entry["final_test_loss"])
      assert 0 < len(entry["curve"]["step"]) == len(entry["curve"]["loss"]) <= 200
      with np.load(os.path.join(evaluated, t["runs"][name])) as runs:
        shape = runs["train_loss"].shape
      assert shape[1:] == (res["seeds"], t["num_steps"])
      if name in BASELINES:
        assert len(entry["lrs"]) >= 6 and shape[0] == len(entry["lrs"])
        assert entry["best_lr"] in entry["lrs"]
    # The untuned default is Adam's grid at 1e-3: never better than tuned Adam.
    default, adam = t["optimizers"]["default"], t["optimizers"]["adam"]
    assert default["best_lr"] == pytest.approx(1e-3) and t["runs"]["default"] == t["runs"]["adam"]
    assert default["final_train_loss"] == pytest.approx(
        adam["final_train_loss_by_lr"][adam["lrs"].index(default["best_lr"])])
    for name in (*BASELINES, "default"):
      assert t["speedup"][name] >= 0
    # Trials to match, recomputed from the per-lr final losses.
    finals = adam["final_train_loss_by_lr"]
    k = sum(f is not None and f <= t["optimizers"]["rule"]["final_train_loss"] for f in finals)
    assert t["trials_to_match"] == (len(finals) / k if k else None)
    assert t["distribution"] == {"inside": None, "by": "suite design",
                                 "why": "suite 'tiny' is not designed to be inside or outside"}
  s = res["summary"]
  assert s["num_tasks"] == 2 and "median_speedup_vs_adam" in s
  assert set(s["vs"]) == {*BASELINES, "default"}
  assert 0 <= s["vs"]["adam"]["reached_fraction"] <= 1
  assert s["trials_to_match"]["num_tasks"] == 2
  assert s["distribution"] == {"inside": 0, "outside": 0, "unknown": 2}


def test_summary_text(evaluated):
  with open(os.path.join(evaluated, "results.json")) as f:
    res = json.load(f)
  text = summary_text(res, evaluated)
  v = res["summary"]["vs"]["adam"]
  assert f"vs tuned Adam: reached its final loss on {v['num_reached']}/2 tasks" in text
  assert "median speedup" in text and "vs tuned AdamW + warmup-cosine" in text
  assert "Adam 1e-3 (untuned default)" in text and "random learning-rate trials" in text
  median = res["summary"]["median_speedup_vs_adam"]
  assert ("Yes: init:mlp_lopt beat tuned Adam" if median > 1 else
          "No: init:mlp_lopt did not beat tuned Adam") in text
  assert os.path.join(evaluated, "results.json") in text
  assert f"metalearn report {evaluated}" in text


def test_report(evaluated, capsys):
  assert cli.main(["report", evaluated]) == 0
  path = capsys.readouterr().out.strip().splitlines()[-1]
  assert path == os.path.join(evaluated, "report.md")
  text = open(path).read()
  top = text.split("\n## ")[0]   # before the first evaluation's section
  with open(os.path.join(evaluated, "results.json")) as f:
    median = json.load(f)["summary"]["median_speedup_vs_adam"]
  assert ("**Yes: `init:mlp_lopt` beat tuned Adam**" if median > 1 else
          "**No: `init:mlp_lopt` did not beat tuned Adam**") in top
  assert "Whether the 2 tasks are inside the rule's meta-training distribution is unknown" in top
  assert "| task | steps | learned rule |" in text and "median speedup" in text
  assert "AdamW + warmup-cosine" in text and "Adam 1e-3 (untuned default)" in text
  assert "Adam trials to match" in text and "| task | inside? | why | judged by |" in text
  assert "linreg_d8_s0" in text
  images = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
  assert len(images) >= 2
  import matplotlib.image
  for rel in images:
    assert not os.path.isabs(rel)
    with open(os.path.join(evaluated, rel), "rb") as f:
      assert f.read(8) == PNG_SIGNATURE
    assert matplotlib.image.imread(os.path.join(evaluated, rel)).ndim == 3
  assert not glob.glob(os.path.join(evaluated, "**", "*.tmp"), recursive=True)


def test_rerun_same_optimizer_reuses_runs(evaluated):
  res = run_evaluation("init:mlp_lopt", "tiny", evaluated, progress=False)
  assert res["complete"]
  assert res["cache"] == {"hits": 2 * (1 + len(BASELINES)), "misses": 0}


def test_shared_cache_dir_trains_only_the_new_rule(evaluated, tmp_path):
  # A second rule in its own workdir, pointed at the first evaluation's cache: every baseline grid
  # is found there and only the rule's own runs are trained.
  other = str(tmp_path / "other")
  assert cli.main(["evaluate", "--optimizer", "init:scaled_lopt", "--suite", "tiny", "--workdir",
                   other, "--cache_dir", os.path.join(evaluated, "runs")]) == 0
  with open(os.path.join(other, "results.json")) as f:
    res = json.load(f)
  n = len(get_suite("tiny"))
  assert res["cache"] == {"hits": n * len(BASELINES), "misses": n}
  assert not os.path.exists(os.path.join(other, "runs"))


def test_cache_dir_that_does_not_exist_is_made_before_the_runs(tmp_path):
  # A grid computed for minutes and then lost because --cache_dir was new: the directory is made
  # first; a cache path that cannot be a directory fails before any run, naming it.
  from metalearn.evaluate.runner import _cached_grid
  counts, ran = {"hits": 0, "misses": 0}, []
  compute = lambda: ran.append(1) or {"train_loss": np.ones((1, 1, 3))}
  new = str(tmp_path / "new" / "cache")
  out, path = _cached_grid(new, "t", {"a": 1}, compute, counts)
  assert os.path.dirname(path) == new and os.path.isfile(path) and ran == [1]
  np.testing.assert_array_equal(np.load(path)["train_loss"], out["train_loss"])
  assert _cached_grid(new, "t", {"a": 1}, compute, counts)[1] == path and ran == [1]
  assert counts == {"hits": 1, "misses": 1}
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="is a file, not a directory"):
    _cached_grid(str(blocker / "cache"), "t", {"a": 1}, compute, counts)
  assert ran == [1] and blocker.read_text() == "x"


def test_subset_of_baselines(evaluated, tmp_path):
  from metalearn.evaluate import report
  workdir = str(tmp_path / "subset")
  res = run_evaluation("init:mlp_lopt", "tiny", workdir, progress=False,
                       cache_dir=os.path.join(evaluated, "runs"), baselines=["adamw_cosine", "adam"])
  assert res["tuned_baselines"] == ["adam", "adamw_cosine"]
  assert set(res["summary"]["vs"]) == {"adam", "adamw_cosine", "default"}
  for t in res["tasks"]:
    assert set(t["optimizers"]) == {"rule", "adam", "adamw_cosine", "default"}
  assert res["cache"]["misses"] == 0
  report.write_report(workdir)
  text = open(os.path.join(workdir, "report.md")).read()
  assert "AdamW + warmup-cosine" in text and "SGD+momentum" not in text
  for bad, match in ((["adamw"], "must include 'adam'"), (["adam", "lion"], "unknown baseline")):
    with pytest.raises(ValueError, match=match):
      run_evaluation("init:mlp_lopt", "tiny", str(tmp_path / "bad"), baselines=bad)
  assert not os.path.exists(tmp_path / "bad" / "results.json")


def test_other_optimizer_does_not_overwrite(evaluated):
  path = os.path.join(evaluated, "results.json")
  before = open(path).read()
  with pytest.raises(ValueError, match="another --workdir"):
    run_evaluation("init:adam", "tiny", evaluated)
  with pytest.raises(ValueError, match="another --workdir"):
    run_evaluation("init:mlp_lopt", "demo", evaluated)
  assert open(path).read() == before


# -- workdirs that cannot be written ---------------------------------------------------------------


def test_workdir_is_a_file(tmp_path, capsys):
  path = tmp_path / "results_here"
  path.write_text("not a directory")
  with pytest.raises(WorkdirError, match="is a file, not a directory") as info:
    run_evaluation("init:mlp_lopt", "tiny", str(path))
  assert isinstance(info.value, ValueError) and str(path) in str(info.value)
  assert path.read_text() == "not a directory"
  assert cli.main(["evaluate", "--optimizer", "init:mlp_lopt", "--suite", "tiny",
                   "--workdir", str(path / "sub")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("metalearn evaluate: error: cannot write") and "Traceback" not in err


@pytest.fixture
def read_only_dir(tmp_path):
  d = tmp_path / "ro"
  d.mkdir()
  d.chmod(stat.S_IRUSR | stat.S_IXUSR)
  if os.access(d, os.W_OK):   # root can write anyway
    d.chmod(0o755)
    pytest.skip("running as a user (root) who can write to read-only directories")
  yield d
  d.chmod(0o755)


def test_read_only_workdir(read_only_dir, capsys):
  with pytest.raises(PermissionError, match="not writable") as info:
    run_evaluation("init:mlp_lopt", "tiny", str(read_only_dir))
  assert isinstance(info.value, WorkdirError) and str(read_only_dir) in str(info.value)
  assert os.listdir(read_only_dir) == []
  assert cli.main(["evaluate", "--optimizer", "init:mlp_lopt", "--suite", "tiny",
                   "--workdir", str(read_only_dir)]) == 2
  assert "metalearn evaluate: error: cannot write" in capsys.readouterr().err


def test_report_into_read_only_dir(evaluated, read_only_dir):
  source = os.path.join(evaluated, "results.json")
  os.chmod(read_only_dir, 0o755)
  with open(source) as f, open(read_only_dir / "results.json", "w") as g:
    g.write(f.read())
  os.chmod(read_only_dir, stat.S_IRUSR | stat.S_IXUSR)
  with pytest.raises(PermissionError, match="not writable"):
    write_report(str(read_only_dir))
  assert os.listdir(read_only_dir) == ["results.json"]


def test_failed_write_leaves_the_old_file(tmp_path):
  path = str(tmp_path / "results.json")
  files.write_json(path, {"complete": True})
  with pytest.raises(ValueError):   # NaN is refused part-way through serialising
    files.write_json(path, {"a": 1, "tasks": [1.0, float("nan")]})

  def write_half(f):
    f.write(b'{"complete": fa')
    raise KeyboardInterrupt   # interrupted in the middle of writing

  with pytest.raises(KeyboardInterrupt):
    files.write_atomic(path, write_half)
  with open(path) as f:
    assert json.load(f) == {"complete": True}
  assert os.listdir(tmp_path) == ["results.json"]


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
