"""Real multi-process meta-training on localhost: 2 processes × 4 CPU devices vs 1 process × 8.

Uses JAX's own distributed runtime (jax.distributed, gloo collectives on CPU), nothing mocked.
"""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from metalearn.artifacts import from_workdir as load_meta_params
from meta_helpers import TINY_FLAGS


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices))
  env.pop("XLA_FLAGS", None)
  return env


def _meta_train(workdir, steps, *extra):
  return [sys.executable, "-m", "metalearn.cli", "meta-train", "--workdir", str(workdir),
          *TINY_FLAGS, "--config.num_devices=0", f"--config.num_outer_steps={steps}", *extra]


def _two_processes(workdir, steps):
  port = _free_port()
  procs = [subprocess.Popen(
      _meta_train(workdir, steps, "--multihost", "--coordinator_address", f"localhost:{port}",
                  "--num_processes", "2", "--process_id", str(i)),
      env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return outs


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume(tmp_path):
  single = tmp_path / "single"
  out = subprocess.run(_meta_train(single, 4), env=_env(8), capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

  multi = tmp_path / "multi"
  _two_processes(multi, 4)
  _, theta_1, info_1 = load_meta_params(str(single))
  _, theta_2, info_2 = load_meta_params(str(multi))
  assert info_1["outer_step"] == info_2["outer_step"] == 4
  for a, b in zip(jax.tree.leaves(theta_1), jax.tree.leaves(theta_2)):
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(a - b).max() <= 1e-4 * max(np.abs(a).max(), 1e-3)

  # One checkpoint directory per saved step (written once, not once per process), one log.
  steps = sorted(int(p.name) for p in (multi / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [2, 4]
  assert not [p for p in multi.iterdir() if "process" in p.name]
  rows = [json.loads(l) for l in open(multi / "metrics.jsonl") if "meta_loss" in l]
  assert [r["step"] for r in rows] == [1, 2, 3, 4]

  # Restart both processes with a longer run: they resume from step 4 instead of starting over.
  _two_processes(multi, 6)
  _, theta_3, info_3 = load_meta_params(str(multi))
  assert info_3["outer_step"] == 6
  rows = [json.loads(l) for l in open(multi / "metrics.jsonl") if "meta_loss" in l]
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
  assert not np.allclose(np.asarray(theta_3["w_out"]), np.asarray(theta_2["w_out"]))
