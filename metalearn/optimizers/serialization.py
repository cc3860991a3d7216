"""Saving and loading a rule's meta-parameters in safetensors (no pickle) with JSON metadata."""
from __future__ import annotations

import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from metalearn.files import atomic_write
from metalearn.optimizers import base

FORMAT = "metalearn.rule.v1"


def _flat_names(theta) -> dict[str, np.ndarray]:
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(theta)[0]:
    name = "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
    out[name] = np.asarray(leaf, np.float32)
  return out


def save_rule(path: str, rule: base.LearnedRule, theta, **metadata) -> None:
  """Writes ``theta`` and the rule's name/config atomically (temp file, then rename)."""
  from metalearn.optimizers import RULES
  names = {v: k for k, v in RULES.items()}
  if type(rule) not in names:
    raise ValueError(f"cannot save a rule of unregistered type {type(rule).__name__}.")
  meta = {"format": FORMAT, "rule": names[type(rule)], "rule_config": json.dumps(rule.config()),
          **{k: json.dumps(v) for k, v in metadata.items()}}
  if "://" not in str(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  atomic_write(path, lambda tmp: save_file(_flat_names(theta), tmp, metadata=meta))


def rule_kwargs(rule_name: str, config: dict) -> dict:
  """Constructor arguments from a stored ``rule_config``: without ``name`` (a class attribute,
  stored by older versions) or arguments the rule has retired."""
  from metalearn.optimizers import RULES
  retired = getattr(RULES.get(rule_name), "retired_config", ())
  return {k: v for k, v in config.items() if k != "name" and k not in retired}


def load_rule(path: str):
  """Returns ``(rule, theta, metadata)`` from a file written by ``save_rule``."""
  from metalearn.optimizers import make_rule
  if "://" in str(path):  # remote (gs://): read a local copy
    from etils import epath
    local = os.path.join(tempfile.mkdtemp(), os.path.basename(str(path)))
    epath.Path(path).copy(epath.Path(local))
    path = local
  if not os.path.exists(path):
    raise FileNotFoundError(f"no meta-parameter file at {path}.")
  try:
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
      meta = f.metadata() or {}
    arrays = load_file(path)
  except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
    raise ValueError(f"{path} is not a readable metalearn weights file (corrupt or truncated: "
                     f"{e}). Re-install the package or re-export the rule.") from e
  if meta.get("format") != FORMAT:
    raise ValueError(f"{path} is not a metalearn rule file (format {meta.get('format')!r}).")
  rule = make_rule(meta["rule"], **rule_kwargs(meta["rule"], json.loads(meta["rule_config"])))
  template = jax.eval_shape(rule.init_meta_params, jax.random.key(0))
  names = _flat_names(jax.tree.map(lambda x: np.zeros(x.shape, np.float32), template))
  missing = set(names) - set(arrays)
  if missing:
    raise ValueError(f"{path} lacks meta-parameters {sorted(missing)} for rule {meta['rule']}.")
  # Checked in numpy: this also runs under a trace (pretrained() inside nnx.jit or eval_shape).
  for n in names:
    if not np.all(np.isfinite(arrays[n])):
      raise ValueError(f"{path}: meta-parameter {n} holds non-finite values (corrupt file).")
  leaves = [np.asarray(arrays[n], np.float32) for n in names]  # concrete even under a trace
  theta = jax.tree.unflatten(jax.tree.structure(template), leaves)
  rule.check_meta_params(theta)
  extra = {k: json.loads(v) for k, v in meta.items() if k not in ("format", "rule", "rule_config")}
  return rule, theta, extra
