"""experiments/select_checkpoint.py on a real (tiny) meta-training run: averaged candidates."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from metalearn.optimizers import make_rule
from metalearn.optimizers.serialization import load_rule

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
SCRIPT = os.path.join(ROOT, "experiments", "select_checkpoint.py")
# A recipe file, as select_checkpoint reads one: the engine tests' tiny config plus validation.
RECIPE = f'''
import sys
sys.path.insert(0, {TESTS!r})
from meta_helpers import tiny_config
VALIDATION = [{{"kind": "quadratic", "dim": 6, "seed": 2, "batch_size": 4}}]
VALIDATION_HORIZONS = (15,)
VALIDATION_HORIZONS_BY_KIND = {{"linreg": (10,)}}

def get_config():
  return tiny_config(rule="scaled_lopt", keep_checkpoints=5, eval_horizon=15, outer_lr=3e-2)
'''


def _select(run, out_name, *flags):
  """Runs select_checkpoint.py on the fixture's run, as a user would."""
  d, recipe, env = run
  return subprocess.run([sys.executable, SCRIPT, str(d / "run"), str(d / out_name),
                         "--config", str(recipe), *flags], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def _select_module():
  spec = importlib.util.spec_from_file_location("select_checkpoint", SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  d = tmp_path_factory.mktemp("select")
  recipe = d / "recipe.py"
  recipe.write_text(RECIPE)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  subprocess.run([sys.executable, "-m", "metalearn.cli", "meta-train", "--config", str(recipe),
                  "--workdir", str(d / "run")], check=True, env=env, cwd=ROOT, timeout=600)
  return d, recipe, env


def test_average_candidate_is_scored_and_is_the_mean(run):
  d, _, _ = run
  out = d / "selected.safetensors"
  p = _select(run, out.name, "--average", "2:6")
  assert p.returncode == 0, p.stderr[-3000:]
  report = json.load(open(d / "selected_validation.json"))
  assert report["averaged"] == {"avg:2-6": [2, 4, 6]}
  assert np.isfinite(report["scores"]["avg:2-6"])
  assert set(report["scores"]) == {"0", "2", "4", "6", "avg:2-6"}
  # The averaged candidate's meta-parameters are the element-wise mean of those checkpoints.
  mod = _select_module()
  rule = make_rule("scaled_lopt")
  kept = mod.checkpoint_thetas(str(d / "run"), rule)
  key, steps, avg = mod.average_thetas(kept, "2:6")
  assert (key, steps) == ("avg:2-6", [2, 4, 6])
  for name in avg:
    want = np.mean([np.asarray(kept[s][name]) for s in (2, 4, 6)], axis=0)
    np.testing.assert_allclose(np.asarray(avg[name]), want, rtol=1e-6, atol=1e-7)
  assert not np.allclose(np.asarray(kept[2]["log_lr"]), np.asarray(kept[6]["log_lr"]))
  # What was exported is the best-scoring candidate, with its provenance.
  _, theta, info = load_rule(str(out))
  best = report["best"]
  assert report["scores"][str(best)] == min(report["scores"].values())
  if best == "avg:2-6":
    assert info["averaged_steps"] == [2, 4, 6] and info["outer_step"] == 6
  else:
    assert info["outer_step"] == best
  source = avg if best == "avg:2-6" else (kept[best] if best else None)
  if source is not None:
    np.testing.assert_allclose(np.asarray(theta["log_lr"]), np.asarray(source["log_lr"]),
                               rtol=1e-6)


def test_average_range_without_two_checkpoints_is_a_clear_error(run):
  out = run[0] / "bad.safetensors"
  p = _select(run, out.name, "--average", "5:5")
  assert p.returncode != 0
  assert "--average 5:5" in p.stderr and "at least two" in p.stderr
  assert not out.exists()
