"""The meta-training engine: device-count invariance, divergence, resume, bad input, CLI."""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metalearn as ml
from metalearn import artifacts, cli, parallel
from metalearn.meta import config as config_lib
from metalearn.meta.step import MetaStep, load_init_theta
from metalearn.optimizers import make_rule
from metalearn.meta.train import train_and_evaluate
from meta_helpers import TINY_FLAGS, tiny_config


def _run_steps(config, num_devices, steps=3):
  trainer = MetaStep(config, mesh=parallel.make_mesh(num_devices))
  state = trainer.init_state()
  grads = []
  for _ in range(steps):
    state, metrics, grad = trainer.step(state)
    grads.append(jax.device_get(grad))
  return jax.device_get(state["theta"]), grads, jax.device_get(metrics)


# ES-family gradients are (L+ - L-) / (2 sigma^2) times noise: the antithetic difference amplifies
# float32 rounding of the losses (which XLA computes in a different order for 16 vs 2 members per
# device) by ~1/(2 sigma^2). Their agreement is measured relative to the gradient's size.
GRAD_TOL = {"tbptt": 1e-5, "pes": 1e-4}


@pytest.mark.slow   # the default step checks the sharding itself (test_population_is_sharded...)
@pytest.mark.parametrize("estimator", ["pes", "tbptt"])
def test_one_and_eight_devices_agree(estimator):
  assert len(jax.devices()) == 8, "conftest should emulate 8 CPU devices"
  config = tiny_config(estimator=estimator)
  theta1, grads1, _ = _run_steps(config, 1)
  theta8, grads8, _ = _run_steps(config, 8)
  for g1, g8 in zip(grads1, grads8):
    scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(g1))
    worst = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g8)))
    assert worst <= GRAD_TOL[estimator] * scale, (estimator, worst / scale)
  for a, b in zip(jax.tree.leaves(theta1), jax.tree.leaves(theta8)):
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(a - b).max() <= GRAD_TOL[estimator] * max(np.abs(a).max(), 1e-3), estimator
  # Meta-training moved theta: the comparison is not between two untouched inits.
  theta0 = ml.optimizers.MLPLOpt().init_meta_params(jax.random.split(jax.random.key(0), 3)[0])
  assert not np.allclose(theta1["w_out"], theta0["w_out"])


def test_grouped_update_gives_the_same_meta_gradients():
  """``grouped_update`` (the rule's per-shape-class update path) is a speed switch: same numbers."""
  mlp = {"kind": "image_mlp", "dataset": "digits", "hidden": [16, 16], "activation": "relu",
         "batch_size": 16}   # two 16-vectors and a 16x16 matrix beside unique shapes
  out = {}
  for grouped in (False, True):
    config = tiny_config(task_specs=(mlp,), estimator="tbptt", rule="scaled_lopt",
                         grouped_update=grouped, population_per_task=2)
    _, grads, metrics = _run_steps(config, 1, steps=2)
    out[grouped] = (grads, metrics)
  for g0, g1 in zip(out[False][0], out[True][0]):
    scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(g0))
    assert scale > 0
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
      # Batched reductions sum in another order: float32 rounding, amplified by 2 steps of BPTT.
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale)
  np.testing.assert_allclose(out[False][1]["meta_loss"], out[True][1]["meta_loss"], rtol=1e-5)


def test_population_is_sharded_over_the_mesh():
  trainer = MetaStep(tiny_config(), mesh=parallel.make_mesh(8))
  state = trainer.init_state()
  leaf = jax.tree.leaves(state["members"][0])[0]
  assert len(leaf.sharding.device_set) == 8
  assert leaf.addressable_shards[0].data.shape[0] == leaf.shape[0] // 8


@pytest.mark.parametrize("estimator", [
    "pes", pytest.param("tbptt", marks=pytest.mark.slow), pytest.param("nres", marks=pytest.mark.slow)])
def test_adversarial_meta_params_leave_theta_finite(estimator):
  config = tiny_config(estimator=estimator, rule="sgdm")
  trainer = MetaStep(config, mesh=parallel.make_mesh(1))
  state = trainer.init_state()
  state["theta"] = {"log_lr": jnp.float32(6.0), "logit_momentum": jnp.float32(3.0)}  # lr ~ 400
  diverged = []
  for _ in range(4):
    state, metrics, _ = trainer.step(state)
    diverged.append(float(metrics["diverged_fraction"]))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state["theta"]))
    assert bool(jnp.all(jnp.isfinite(metrics["meta_loss"])))
  assert max(diverged) > 0.5  # the runs really blew up, and were masked, restarted


def test_meta_training_lowers_the_meta_loss_against_a_frozen_control():
  """Later truncations have lower loss anyway (runs progress): the same run with outer_lr=0 (theta
  frozen, same keys and tasks) is the control that meta-learning must beat."""
  def late_loss(outer_lr):
    trainer = MetaStep(tiny_config(num_outer_steps=40, outer_lr=outer_lr),
                       mesh=parallel.make_mesh(1))
    state, losses = trainer.init_state(), []
    for _ in range(40):
      state, metrics, _ = trainer.step(state)
      losses.append(float(metrics["meta_loss"]))
    return np.mean(losses[-10:])

  learned, frozen = late_loss(1e-2), late_loss(0.0)
  assert learned < frozen - 0.02, (learned, frozen)


# -- resume, checkpoints, CLI -----------------------------------------------------------------------


def _theta_from_workdir(workdir):
  _, theta, info = artifacts.from_workdir(str(workdir))
  return theta, info


def _cli(workdir, *extra, env_extra=None):
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="1", JAX_PLATFORMS="cpu")
  env.update(env_extra or {})
  cmd = [sys.executable, "-m", "metalearn.cli", "meta-train", "--workdir", str(workdir),
         *TINY_FLAGS, *extra]
  return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


@pytest.mark.slow
def test_sigkill_at_random_point_then_resume_matches_uninterrupted(tmp_path):
  steps = "--config.num_outer_steps=12"
  ref = _cli(tmp_path / "ref", steps)
  out, _ = ref.communicate(timeout=300)
  assert ref.returncode == 0, out

  victim = _cli(tmp_path / "victim", steps)
  ckpt = tmp_path / "victim" / "checkpoints"
  deadline = time.time() + 240
  while time.time() < deadline:  # wait for the first finished checkpoint, then a bit more
    if ckpt.exists() and any(p.name.isdigit() for p in ckpt.iterdir()):
      break
    time.sleep(0.2)
  time.sleep(random.uniform(0.0, 1.5))
  victim.send_signal(signal.SIGKILL)
  victim.wait()
  # TensorBoard events are flushed as they are logged: a killed run's steps are in them.
  events = list((tmp_path / "victim" / "tensorboard").glob("events*"))
  assert events and sum(e.stat().st_size for e in events) > 100
  resumed = _cli(tmp_path / "victim", steps)
  out, _ = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, out

  theta_ref, info_ref = _theta_from_workdir(tmp_path / "ref")
  theta_res, info_res = _theta_from_workdir(tmp_path / "victim")
  assert info_ref["outer_step"] == info_res["outer_step"] == 12
  chex.assert_trees_all_equal(theta_ref, theta_res)
  rows = [json.loads(l) for l in open(tmp_path / "victim" / "metrics.jsonl")]
  steps_logged = [r["step"] for r in rows if "meta_loss" in r]
  assert steps_logged == sorted(set(steps_logged)), "a resumed run must not duplicate log rows"


def test_cli_run_resume_and_load_optimizer(tmp_path):
  w = tmp_path / "run"
  assert cli.main(["meta-train", "--workdir", str(w), *TINY_FLAGS,
                   "--config.num_outer_steps=4"]) == 0
  assert cli.main(["meta-train", "--workdir", str(w), *TINY_FLAGS,
                   "--config.num_outer_steps=8"]) == 0
  rows = [json.loads(l) for l in open(w / "metrics.jsonl")]
  assert [r["step"] for r in rows if "meta_loss" in r] == list(range(1, 9))
  assert (w / "theta.safetensors").exists() and (w / "config.json").exists()
  assert any(p.name.startswith("events") for p in (w / "tensorboard").iterdir())
  theta, info = _theta_from_workdir(w)
  assert info["outer_step"] == 8
  # The result trains a model it has never seen, through the public loader.
  tx = ml.load_optimizer(str(w), num_steps=100)
  params = {"w": jnp.ones((5, 3)), "b": jnp.zeros((3,))}
  x = jax.random.normal(jax.random.key(0), (64, 5))
  y = x @ jax.random.normal(jax.random.key(1), (5, 3))
  loss_fn = lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2)
  state = tx.init(params)
  first = loss_fn(params)
  for _ in range(100):
    loss, g = jax.value_and_grad(loss_fn)(params)
    u, state = tx.update(g, state, params, loss=loss)
    params = optax.apply_updates(params, u)
  assert loss_fn(params) < 0.9 * first


@pytest.mark.slow
def test_learned_rule_as_outer_optimizer(tmp_path):
  teacher = tmp_path / "teacher"
  assert cli.main(["meta-train", "--workdir", str(teacher), *TINY_FLAGS,
                   "--config.num_outer_steps=2"]) == 0
  config = tiny_config(outer_optimizer=str(teacher), num_outer_steps=3)
  theta = train_and_evaluate(config, str(tmp_path / "student"), mesh=parallel.make_mesh(1)).theta
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(theta))


# -- bad input -------------------------------------------------------------------------------------


def _meta_train_error(capsys, *args):
  code = cli.main(["meta-train", *args])
  return code, capsys.readouterr().err


def test_unknown_config_key(capsys, tmp_path):
  code, err = _meta_train_error(capsys, "--workdir", str(tmp_path / "w"),
                                "--config.num_outer_stepz=3")
  assert code == 2 and "unknown config key 'num_outer_stepz'" in err and "num_outer_steps" in err
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("flag,needle", [
    ("--config.num_outer_steps=0", "num_outer_steps must be > 0"),
    ("--config.truncation_length=50", "longer than the shortest horizon"),
    ("--config.population_per_task=3", "does not divide over"),
    ("--config.estimator=foo", "estimator must be one of"),
    ("--config.num_outer_steps=abc", "expected a int"),
])
def test_invalid_values_fail_before_work(capsys, tmp_path, flag, needle):
  extra = ["--config.num_devices=2"] if "population" in flag else []
  code, err = _meta_train_error(capsys, "--workdir", str(tmp_path / "w"), *TINY_FLAGS, *extra, flag)
  assert code == 2 and needle in err, err
  assert not (tmp_path / "w").exists()


def test_unwritable_workdir(capsys, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  code, err = _meta_train_error(capsys, "--workdir", str(blocker / "run"), *TINY_FLAGS)
  assert code == 2 and "not writable" in err


def _tree_digest(path):
  h = hashlib.sha256()
  for root, _, files in sorted(os.walk(path)):
    for f in sorted(files):
      h.update(f.encode())
      h.update(open(os.path.join(root, f), "rb").read())
  return h.hexdigest()


def test_incompatible_checkpoint_is_refused_and_untouched(capsys, tmp_path):
  w = tmp_path / "w"
  assert cli.main(["meta-train", "--workdir", str(w), *TINY_FLAGS,
                   "--config.num_outer_steps=2"]) == 0
  before = _tree_digest(w / "checkpoints")
  code, err = _meta_train_error(capsys, "--workdir", str(w), *TINY_FLAGS,
                                "--config.num_outer_steps=4", "--config.rule=hyperparam_net")
  assert code == 2 and "different config" in err and "rule" in err
  assert _tree_digest(w / "checkpoints") == before


def test_workdir_of_an_older_version_resumes_when_new_keys_keep_their_defaults(capsys, tmp_path):
  """A run written before a config key existed (here 0.3.0's, without ``train_only``) resumes
  after an upgrade, unless the new key is set to something other than its default."""
  w = tmp_path / "w"
  assert cli.main(["meta-train", "--workdir", str(w), *TINY_FLAGS,
                   "--config.num_outer_steps=2"]) == 0
  for meta in (w / "checkpoints").glob("*/config/metadata"):
    stored = json.loads(meta.read_text())
    assert "train_only" in stored
    del stored["train_only"]
    meta.write_text(json.dumps(stored))
  code, err = _meta_train_error(capsys, "--workdir", str(w), *TINY_FLAGS,
                                "--config.num_outer_steps=4", "--config.train_only=('log_lr',)")
  assert code == 2 and "different config" in err and "train_only" in err
  assert cli.main(["meta-train", "--workdir", str(w), *TINY_FLAGS,
                   "--config.num_outer_steps=4"]) == 0
  assert sorted(int(p.name) for p in (w / "checkpoints").iterdir() if p.name.isdigit())[-1] == 4


def test_missing_config_file(capsys, tmp_path):
  code, err = _meta_train_error(capsys, "--workdir", str(tmp_path / "w"), "--config",
                                str(tmp_path / "nope.py"))
  assert code == 2 and "does not exist" in err


def test_config_files_in_experiments_load():
  root = os.path.join(os.path.dirname(__file__), "..", "experiments")
  for name in sorted(os.listdir(root)):
    text = open(os.path.join(root, name)).read() if name.endswith(".py") else ""
    # Meta-training recipes; search_*.py are `metalearn search` configs (tested in test_search),
    # self_improve*.py are `metalearn self-improve` configs (tested in test_self_improve),
    # campaign_*.py are `metalearn campaign` configs (tested in test_nas).
    if "def get_config" in text and not name.startswith(("_", "search_", "self_improve",
                                                         "campaign_")):
      config = config_lib.load_config(os.path.join(root, name))
      config_lib.validate(config, 1)
      if config.init_theta.startswith(("pretrained:", "init:")):   # not a run's own workdir
        # A warm start names a shipped rule; when `default` changes its class, the recipe must
        # follow (default_finetune_28x28 pointed at a ScaledLOpt `default` with rule mlp_lopt).
        load_init_theta(config, make_rule(config.rule, **dict(config.rule_kwargs)))


def test_checkpoint_of_another_state_layout_is_refused_clearly(tmp_path):
  """A checkpoint written by another version of the state (say, a rule whose optimizer state
  changed shape) must fail with a message naming the mismatch, and stay as it is."""
  from metalearn.checkpoint import Checkpointer
  ckpt = Checkpointer(str(tmp_path / "c"), async_save=False)
  old = {"step": jnp.zeros((), jnp.int32), "theta": {"w": jnp.ones((3, 4))},
         "opt": [jnp.zeros((3, 4)), jnp.zeros((3, 4))]}
  ckpt.save(1, old, {"seed": 0})
  ckpt.wait()
  before = _tree_digest(tmp_path / "c")
  new = {"step": jnp.zeros((), jnp.int32), "theta": {"w": jnp.ones((3, 4))},
         "opt": [jnp.zeros((2, 3, 4))]}
  with pytest.raises(ValueError, match=r"does not match this code's meta-training state.*opt/0 is float32\[3, 4\] where this code expects float32\[2, 3, 4\]"):
    ckpt.restore(new)
  renamed = {"step": jnp.zeros((), jnp.int32), "theta": {"w": jnp.ones((3, 5))},
             "opt": [jnp.zeros((3, 4)), jnp.zeros((3, 4))]}
  with pytest.raises(ValueError, match=r"expects float32\[3, 5\]"):
    ckpt.restore(renamed)
  restored, step = ckpt.restore(old)
  assert step == 1
  np.testing.assert_array_equal(restored["theta"]["w"], old["theta"]["w"])
  ckpt.close()
  assert _tree_digest(tmp_path / "c") == before


def test_init_theta_warm_starts_from_a_shipped_rule_or_file(tmp_path):
  from metalearn.optimizers.serialization import save_rule
  rule, shipped, _ = ml.pretrained_rule("default_v1")
  trainer = MetaStep(tiny_config(init_theta="pretrained:default_v1"))
  theta = trainer.init_state()["theta"]
  chex.assert_trees_all_equal(theta, shipped)
  # A .safetensors file works too, and meta-training moves on from it.
  moved = jax.tree.map(lambda x: x + 0.01, shipped)
  path = str(tmp_path / "start.safetensors")
  save_rule(path, rule, moved)
  trainer = MetaStep(tiny_config(init_theta=path))
  state = trainer.init_state()
  np.testing.assert_array_equal(state["theta"]["log_lr"], moved["log_lr"])
  state, metrics, _ = trainer.step(state)
  assert bool(metrics["theta_finite"])


def test_init_theta_of_another_rule_is_refused(tmp_path):
  with pytest.raises(ValueError, match="holds meta-parameters of HyperparamNet.*meta-trains MLPLOpt"):
    MetaStep(tiny_config(init_theta="pretrained:hyperparam_net"))
  with pytest.raises(ValueError, match="init_theta='nope'"):
    MetaStep(tiny_config(init_theta="nope"))
  with pytest.raises(ValueError, match="holds meta-parameters of MLPLOpt"):
    MetaStep(tiny_config(init_theta="pretrained:default_v1", rule_kwargs={"hidden_size": 8}))


def test_train_only_freezes_the_other_meta_parameters():
  """A second-phase run (``train_only``): the named meta-parameters move, the others stay put."""
  config = tiny_config(rule="scaled_lopt", train_only=("log_lr", "b_ctrl"))
  trainer = MetaStep(config, mesh=parallel.make_mesh(1))
  state = trainer.init_state()
  start = jax.device_get(state["theta"])
  for _ in range(3):
    state, _, grad = trainer.step(state)
  end = jax.device_get(state["theta"])
  assert float(np.abs(np.asarray(jax.device_get(grad)["w_in"])).max()) > 0  # it had a gradient
  for k in start:
    moved = not np.array_equal(start[k], end[k])
    assert moved == (k in ("log_lr", "b_ctrl")), k


def test_train_only_names_an_unknown_meta_parameter_clearly():
  config = tiny_config(rule="scaled_lopt", train_only=("log_lr", "no_such"))
  with pytest.raises(ValueError, match=r"train_only names \['no_such'\].*its meta-parameters are"):
    MetaStep(config, mesh=parallel.make_mesh(1))
