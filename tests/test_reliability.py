"""Interruption, damaged files and config mistakes: runs stop cleanly, resume, and say what happened.

The CLI runs as a subprocess, the way users and preemptible TPU VMs run it.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from metalearn import artifacts, cli
from meta_helpers import TINY_FLAGS


def _start(workdir, *extra):
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="1", JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "metalearn.cli", "meta-train", "--workdir", str(workdir),
         *TINY_FLAGS, *extra]
  return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _wait_for_log_step(workdir, step, proc, timeout=240):
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, proc.communicate()[0]
    if os.path.exists(path):
      steps = [json.loads(l).get("step", 0) for l in open(path) if l.strip()]
      if steps and max(steps) >= step:
        return
    time.sleep(0.1)
  raise AssertionError("the run never got going")


def _saved_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(p) for p in os.listdir(d) if p.isdigit())


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_the_current_step_and_resume_finishes(tmp_path, sig, code):
  """Ctrl-C and SIGTERM both finish the step, save it (even off the checkpoint schedule, and
  exactly once when it is on it), print 'preempted' and exit 128+signal; rerunning finishes."""
  w = tmp_path / "w"
  proc = _start(w, "--config.num_outer_steps=400", "--config.checkpoint_every=1")
  _wait_for_log_step(w, 3, proc)
  proc.send_signal(sig)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == code, out
  assert "preempted" in out and "Traceback" not in out and "already exists" not in out, out
  saved = _saved_steps(w)
  assert saved and saved[-1] >= 3
  proc = _start(w, "--config.num_outer_steps=" + str(saved[-1] + 2))
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0 and "meta-training done" in out, out
  assert artifacts.from_workdir(str(w))[2]["outer_step"] == saved[-1] + 2


def _run(w, *extra):
  return cli.main(["meta-train", "--workdir", str(w), *TINY_FLAGS, *extra])


def test_damaged_latest_checkpoint_falls_back_to_an_older_one(tmp_path):
  w = tmp_path / "w"
  assert _run(w, "--config.num_outer_steps=4") == 0
  ckpt = w / "checkpoints"
  assert _saved_steps(w) == [2, 4]
  # Truncate every data file of the newest checkpoint (what a crash mid-upload leaves).
  for root, _, files in os.walk(ckpt / "4"):
    for f in files:
      path = os.path.join(root, f)
      with open(path, "r+b") as fh:
        fh.truncate(max(0, os.path.getsize(path) // 3))
  with pytest.warns(UserWarning, match="checkpoint 4 .* could not be read"):
    rule, theta, info = artifacts.from_workdir(str(w))
  assert info["outer_step"] == 2 and (ckpt / "4").exists()   # readers leave it as it is
  with pytest.warns(UserWarning, match="checkpoint 4 .* could not be read"):
    assert _run(w, "--config.num_outer_steps=6") == 0
  assert (ckpt / "4.damaged").exists()                       # kept for inspection
  assert artifacts.from_workdir(str(w))[2]["outer_step"] == 6


def test_torn_last_line_of_the_log_is_tolerated(tmp_path):
  w = tmp_path / "w"
  assert _run(w, "--config.num_outer_steps=2") == 0
  with open(w / "metrics.jsonl", "a") as f:
    f.write('{"step": 3, "meta_lo')
  with pytest.warns(UserWarning, match="metrics.jsonl: line .* not valid JSON"):
    assert _run(w, "--config.num_outer_steps=4") == 0
  rows = [json.loads(l) for l in open(w / "metrics.jsonl")]
  assert [r["step"] for r in rows if "meta_loss" in r] == [1, 2, 3, 4]


def test_resume_with_fewer_steps_changes_nothing(tmp_path, capsys):
  w = tmp_path / "w"
  assert _run(w, "--config.num_outer_steps=4") == 0
  before = {p: open(w / p, "rb").read() for p in ("config.json", "eval.json", "metrics.jsonl")}
  assert _run(w, "--config.num_outer_steps=2") == 0
  assert "already at outer step 4" in capsys.readouterr().out
  assert {p: open(w / p, "rb").read() for p in before} == before


@pytest.mark.parametrize("flag,needle", [
    ("--config.population_per_task=8.0", "population_per_task must be an integer"),
    ("--config.truncation_length=2.5", "truncation_length must be an integer"),
    ("--config.task_families=image_mlp", "takes a tuple or list"),
    ('--config.eval_tasks=({"kind": "image_mlp", "dataset": "digits", "hiden": [8]},)',
     "eval_tasks entry"),
    ("--config.weight_scale=(0.0, 1.0)", "weight_scale must be"),
])
def test_config_mistakes_fail_before_any_work(tmp_path, capsys, flag, needle):
  code = _run(tmp_path / "w", flag)
  err = capsys.readouterr().err
  assert code == 2 and needle in err, err
  assert not (tmp_path / "w").exists()


def test_bad_config_files(tmp_path, capsys):
  none = tmp_path / "none.py"
  none.write_text("def get_config():\n  return None\n")
  for path, needle in [(none, "returned NoneType"), (tmp_path, "is a directory")]:
    code = cli.main(["meta-train", "--workdir", str(tmp_path / "w"), "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err


def test_unreachable_coordinator_fails_with_its_address(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", METALEARN_COMPILE_CACHE="0")
  cmd = [sys.executable, "-m", "metalearn.cli", "meta-train", "--workdir", str(tmp_path / "w"),
         "--multihost", "--coordinator_address", "127.0.0.1:9", "--num_processes", "2",
         "--process_id", "1", "--multihost_timeout", "5", *TINY_FLAGS]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 2, out.stdout + out.stderr
  assert "127.0.0.1:9" in out.stderr and "could not join" in out.stderr, out.stderr


@pytest.mark.slow
def test_persistent_compilation_cache_fills_and_is_reused(tmp_path):
  """A second run of the same config finds its compiled programs in the cache directory."""
  cache = tmp_path / "cache"
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="1", JAX_PLATFORMS="cpu",
             METALEARN_COMPILE_CACHE=str(cache))
  cmd = [sys.executable, "-m", "metalearn.cli", "meta-train", *TINY_FLAGS,
         "--config.num_outer_steps=2"]
  for i in range(2):
    out = subprocess.run(cmd + ["--workdir", str(tmp_path / f"w{i}")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    if i == 0:
      entries = set(os.listdir(cache))
      assert entries, "the first run wrote no compiled programs"
  assert set(os.listdir(cache)) == entries  # the second run compiled nothing new


def test_version_flag(capsys):
  import metalearn
  assert cli.main(["--version"]) == 0
  assert capsys.readouterr().out.strip() == f"metalearn {metalearn.__version__}"
