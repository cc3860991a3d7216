"""Every source of a learned rule, resolved to ``(rule, theta, info)`` in one place.

    rule, theta, info = resolve("pretrained:default")

Sources (``FORMS``):

* ``pretrained:NAME`` — meta-parameters shipped inside the package (``pretrained_names()``);
* ``init:RULE`` — a rule of ``metalearn.optimizers.RULES`` at its initial meta-parameters;
* a meta-train workdir (local or ``gs://``) — its newest readable checkpoint, else its export
  ``theta.safetensors``;
* a ``.safetensors`` file written by ``save`` (local or ``gs://``).

``api.py`` (``ml.pretrained``, ``ml.load_optimizer``), the meta-trainer (``init_theta``, a learned
outer optimizer) and the evaluation all go through ``resolve``.
"""
from __future__ import annotations

from importlib import resources

import jax
import jax.numpy as jnp
from etils import epath

from metalearn.checkpoint import Checkpointer, CheckpointError
from metalearn.optimizers import RULES, make_rule
from metalearn.optimizers.serialization import load_rule, save_rule

PRETRAINED_PACKAGE = "metalearn.optimizers.pretrained"
CHECKPOINT_DIR = "checkpoints"     # a workdir's orbax checkpoints
EXPORT_FILE = "theta.safetensors"  # a workdir's exported meta-parameters
FORMS = ("pretrained:NAME (see metalearn.pretrained_names()), init:RULE (RULE one of "
         f"{', '.join(sorted(RULES))}, at its initial meta-parameters), a meta-train workdir, or a "
         ".safetensors file (local paths or gs://)")

save = save_rule


def pretrained_names() -> list[str]:
  """Names of the meta-parameter sets shipped inside the package."""
  return sorted(p.name[:-len(".safetensors")] for p in resources.files(PRETRAINED_PACKAGE).iterdir()
                if p.name.endswith(".safetensors"))


def pretrained(name: str):
  """``(rule, theta, info)`` of a shipped rule; ValueError naming the shipped ones otherwise."""
  names = pretrained_names()
  if name not in names:
    raise ValueError(f"unknown pretrained rule {name!r}; available: {', '.join(names) or 'none'}.")
  with resources.as_file(resources.files(PRETRAINED_PACKAGE) / f"{name}.safetensors") as path:
    rule, theta, info = load_rule(str(path))
  return rule, theta, {**info, "source": f"pretrained:{name}"}


def from_workdir(workdir: str):
  """``(rule, theta, info)`` of a meta-train workdir: newest readable checkpoint, else the export."""
  root = epath.Path(workdir)
  if not root.is_dir():
    raise FileNotFoundError(f"{workdir} is not a directory; pass a meta-train workdir or a "
                            f"{EXPORT_FILE} file.")
  ckpt_dir = root / CHECKPOINT_DIR
  if ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir()):
    ckpt = Checkpointer(str(ckpt_dir), async_save=False, read_only=True)
    try:
      arrays, config, step = ckpt.restore_arrays("theta")
    except CheckpointError:
      arrays = None  # fall back to the export below
    finally:
      ckpt.close()
    if arrays is not None:
      rule = make_rule(config.get("rule", "mlp_lopt"), **dict(config.get("rule_kwargs") or {}))
      template = jax.eval_shape(rule.init_meta_params, jax.random.key(0))
      theta = jax.tree.map(lambda t, x: jnp.asarray(x, t.dtype), template, arrays)
      rule.check_meta_params(theta)
      info = {"outer_step": step, "source": str(ckpt_dir),
              "train_horizon": [config.get("min_horizon"), config.get("max_horizon")]}
      # The export records the task types that were sampled from families; keep what it says
      # about the run (the checkpoint's own step and source win).
      if (root / EXPORT_FILE).exists():
        info = {**load_rule(str(root / EXPORT_FILE))[2], **info}
      return rule, theta, info
  export = root / EXPORT_FILE
  if export.exists():
    rule, theta, info = load_rule(str(export))
    return rule, theta, {**info, "source": str(export)}
  raise FileNotFoundError(f"{workdir} holds no readable checkpoint and no {EXPORT_FILE}; run "
                          f"`metalearn meta-train --workdir {workdir}` first.")


def resolve(source: str):
  """``(rule, theta, info)`` for any source in ``FORMS``; ValueError/FileNotFoundError otherwise."""
  if not isinstance(source, (str, epath.PathLike)) or not str(source):
    raise ValueError(f"a rule source must be a non-empty string: {FORMS}.")
  source = str(source)
  if source.startswith("pretrained:"):
    return pretrained(source.split(":", 1)[1])
  if source.startswith("init:"):
    name = source.split(":", 1)[1]
    if name not in RULES:
      raise ValueError(f"unknown rule {name!r} in {source!r}; use init:RULE with RULE one of "
                       f"{', '.join(sorted(RULES))}.")
    rule = make_rule(name)
    return rule, rule.init_meta_params(jax.random.key(0)), {"source": source}
  path = epath.Path(source)
  if path.is_dir():
    return from_workdir(source)
  if path.is_file() or (source.endswith(".safetensors") and "://" in source and path.exists()):
    if not source.endswith(".safetensors"):
      raise ValueError(f"{source} is a file but not a .safetensors export; pass {FORMS}.")
    rule, theta, info = load_rule(source)
    return rule, theta, {**info, "source": source}
  raise ValueError(f"no rule at {source!r}: it is not a known form or an existing path; "
                          f"pass {FORMS}.")
