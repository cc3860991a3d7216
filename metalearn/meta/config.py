"""Meta-training configs: Python files with ``get_config()``, overridable key by key.

Every key a config may set is in ``default_config()`` with its default and a comment; a config file
returns a ConfigDict that sets some of them, and ``--config.KEY=VALUE`` flags override them. Unknown
keys and invalid values are rejected before any work starts.
"""
from __future__ import annotations

import ast
import difflib
import json

import ml_collections

from metalearn.files import run_get_config

# Keys that may change between runs on one workdir without making its checkpoint incompatible.
RESUMABLE_KEYS = frozenset({
    "num_outer_steps", "checkpoint_every", "keep_checkpoints", "log_every", "eval_every",
    "eval_horizon", "eval_tasks", "data_dir", "num_devices", "progress", "multihost",
    "coordinator_address", "num_processes", "process_id", "name", "grouped_update"})


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "default"
  # The learned rule and its constructor arguments.
  c.rule = "mlp_lopt"                  # mlp_lopt | hyperparam_net | adam | sgdm
  c.rule_kwargs = ml_collections.ConfigDict({})
  c.init_theta = ""                    # start from these meta-parameters instead of the rule's
                                       # init: pretrained:NAME, a meta-train workdir or a
                                       # .safetensors file (same rule and rule_kwargs)
  # Task distribution: explicit specs (list of TaskSpec dicts) or types sampled from families.
  c.task_specs = ()                    # e.g. ({"kind": "image_mlp", "dataset": "digits", ...},)
  c.task_families = ("image_mlp",)     # families sampled round-robin when task_specs is empty
  c.family_kwargs = ml_collections.ConfigDict()  # per family: constructor ranges, e.g.
                                       # {"image_mlp": {"datasets": ["digits"], "widths": [16, 64]}}
  c.num_task_types = 2                 # how many concrete task configs to sample
  c.task_seed = 0
  c.population_per_task = 8            # inner runs (pairs, for ES) per task type; divides devices
  # Truncated unrolls.
  c.truncation_length = 10
  c.min_horizon = 50
  c.max_horizon = 200
  c.divergence_factor = 10.0
  c.meta_loss = "log"                  # log | ratio (of loss to the run's initial loss)
  c.weight_scale = (1.0, 1.0)          # each run reparameterises p = s q, s log-uniform in this
                                       # range (task augmentation: the rule sees no fixed scale)
  c.remat = False
  c.grouped_update = False             # the rule's update once per shape class (same numbers;
                                       # metalearn.optimizers.grouped), a speed switch only
  # Meta-gradient estimator.
  c.estimator = "pes"                  # tbptt | es | pes | nres
  c.es_sigma = 0.01
  c.es_sign = False                    # ES family: use only the sign of each pair's loss difference
  # Outer loop.
  c.outer_optimizer = "adam"           # adam | sgd | pretrained:NAME | a meta-train workdir
  c.outer_lr = 3e-3
  c.outer_grad_clip = 1.0
  c.train_only = ()                    # top-level meta-parameter names the outer optimizer updates
                                       # (the others stay at their start); empty: all of them
  c.num_outer_steps = 500
  c.seed = 0
  # Bookkeeping.
  c.checkpoint_every = 50
  c.keep_checkpoints = 3
  c.log_every = 10
  c.eval_every = 0                     # 0: evaluate only at the end
  c.eval_horizon = 200
  c.eval_tasks = ()                    # TaskSpec dicts; empty: the meta-training task types
  c.data_dir = ""                      # TFDS data dir; empty: $TFDS_DATA_DIR or the cache dir
  c.num_devices = 0                    # 0: all devices of all hosts
  c.progress = True
  # Multi-host (JAX distributed runtime).
  c.multihost = False
  c.coordinator_address = ""
  c.num_processes = 0
  c.process_id = -1
  return c


def load_config(path: str | None, defaults=default_config) -> ml_collections.ConfigDict:
  """``defaults()`` updated with the ConfigDict that ``path``'s ``get_config()`` returns."""
  config = defaults()
  if not path:
    return config
  values = run_get_config(path, "config file")
  if not hasattr(values, "items"):
    raise ValueError(f"get_config() in {path} returned {type(values).__name__}, not a ConfigDict "
                     "or dict of config keys.")
  override(config, dict(values), source=path)
  return config


def plain(value):
  """ConfigDicts and mappings as nested plain dicts (for constructor kwargs)."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  return {k: (plain(v) if isinstance(v, dict) or hasattr(v, "to_dict") else v)
          for k, v in dict(value).items()}


# Config keys that hold keyword arguments (a dict; ``--config.KEY.NAME=VALUE`` sets one).
NESTED_KEYS = ("rule_kwargs", "family_kwargs", "meta_optimizer_rule_kwargs")


def _suggest(key, keys):
  close = difflib.get_close_matches(key, keys, n=3)
  return f" Did you mean {', '.join(close)}?" if close else ""


def override(config: ml_collections.ConfigDict, values: dict, *, source: str = "override"):
  for key, value in values.items():
    if key not in config:
      raise ValueError(f"unknown config key {key!r} (from {source}).{_suggest(key, list(config))} "
                       f"Valid keys: {', '.join(sorted(config))}.")
    if key in NESTED_KEYS:
      config[key] = ml_collections.ConfigDict(plain(value))
    elif isinstance(config[key], tuple):
      if isinstance(value, str):
        raise ValueError(f"config key {key} takes a tuple or list (e.g. ({value!r},)), got the "
                         f"string {value!r} (from {source}).")
      config[key] = tuple(value)
    else:
      with config.ignore_type():
        config[key] = value


def parse_value(text: str, current):
  """Parses a flag value as a Python literal when it is one, else as a string."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if isinstance(current, bool) and isinstance(value, str):
    if value.lower() in ("true", "false", "1", "0"):
      return value.lower() in ("true", "1")
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value


def apply_flags(config: ml_collections.ConfigDict, flags: list[str]) -> None:
  """Applies ``KEY=VALUE`` pairs (from ``--config.KEY=VALUE``); nested ``rule_kwargs.X`` (any of
  ``NESTED_KEYS``) allowed."""
  for flag in flags:
    if "=" not in flag:
      raise ValueError(f"--config.{flag} needs a value: --config.{flag}=VALUE.")
    key, text = flag.split("=", 1)
    head, _, sub = key.partition(".")
    if sub and head in NESTED_KEYS and head in config:
      current = config[head].get(sub)
      with config[head].ignore_type():
        config[head][sub] = parse_value(text, current)
      continue
    if key not in config:
      raise ValueError(f"unknown config key {key!r} (from --config.{flag}).{_suggest(key, list(config))}")
    value = parse_value(text, config[key])
    expected = type(config[key])
    if expected in (int, float) and not isinstance(value, (int, float)) or (
        expected is bool and not isinstance(value, bool)):
      raise ValueError(f"--config.{key}={text}: expected a {expected.__name__}.")
    override(config, {key: value}, source=f"--config.{key}")


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first invalid value and how to fix it."""
  from metalearn.meta.estimators import ESTIMATORS
  from metalearn.optimizers import RULES
  c = config

  def need(cond, msg):
    if not cond:
      raise ValueError(f"invalid config: {msg}")

  for key in ("num_outer_steps", "truncation_length", "min_horizon", "max_horizon",
              "population_per_task", "num_task_types", "checkpoint_every", "keep_checkpoints",
              "log_every", "eval_every", "eval_horizon", "num_devices", "task_seed", "seed"):
    need(isinstance(c[key], int) and not isinstance(c[key], bool),
         f"{key} must be an integer, got {c[key]!r} ({type(c[key]).__name__}).")
  need(c.num_outer_steps > 0, f"num_outer_steps must be > 0, got {c.num_outer_steps}.")
  need(c.truncation_length > 0, f"truncation_length must be > 0, got {c.truncation_length}.")
  need(c.min_horizon > 0 and c.max_horizon >= c.min_horizon,
       f"need 0 < min_horizon <= max_horizon, got {c.min_horizon}, {c.max_horizon}.")
  need(c.truncation_length <= c.min_horizon,
       f"truncation_length ({c.truncation_length}) is longer than the shortest horizon "
       f"(min_horizon={c.min_horizon}); lower truncation_length or raise min_horizon.")
  need(c.population_per_task > 0, f"population_per_task must be > 0, got {c.population_per_task}.")
  need(c.population_per_task % num_devices == 0,
       f"population_per_task={c.population_per_task} does not divide over {num_devices} devices; "
       f"use a multiple of {num_devices} (or set num_devices).")
  need(c.estimator in ESTIMATORS, f"estimator must be one of {list(ESTIMATORS)}, got {c.estimator!r}.")
  need(c.rule in RULES, f"rule must be one of {sorted(RULES)}, got {c.rule!r}.")
  need(c.es_sigma > 0, f"es_sigma must be > 0, got {c.es_sigma}.")
  need(c.outer_lr >= 0, f"outer_lr must be >= 0 (0 freezes theta: a control run), got "
       f"{c.outer_lr}.")
  need(c.divergence_factor > 1, f"divergence_factor must be > 1, got {c.divergence_factor}.")
  need(c.meta_loss in ("log", "ratio"), f"meta_loss must be 'log' or 'ratio', got {c.meta_loss!r}.")
  need(c.checkpoint_every > 0, f"checkpoint_every must be > 0, got {c.checkpoint_every}.")
  need(c.keep_checkpoints > 0, f"keep_checkpoints must be > 0, got {c.keep_checkpoints}.")
  need(c.log_every > 0, f"log_every must be > 0, got {c.log_every}.")
  need(c.eval_horizon > 0, f"eval_horizon must be > 0, got {c.eval_horizon}.")
  need(c.task_specs or (c.task_families and c.num_task_types > 0),
       "set task_specs, or task_families with num_task_types > 0.")
  lo, hi = (tuple(c.weight_scale) + (None, None))[:2]
  need(len(tuple(c.weight_scale)) == 2 and all(isinstance(x, (int, float)) for x in (lo, hi))
       and 0 < lo <= hi, f"weight_scale must be (lo, hi) with 0 < lo <= hi, got {c.weight_scale}.")
  from metalearn.tasks import FAMILIES, TaskSpec
  unknown = [f for f in c.task_families if f not in FAMILIES]
  need(not unknown, f"unknown task_families {unknown}; choose from {sorted(FAMILIES)}.")
  extra = set(plain(c.get("family_kwargs", {}) or {})) - set(c.task_families)
  need(not extra, f"family_kwargs for {sorted(extra)}, which are not in task_families "
       f"{list(c.task_families)}.")
  for what in ("task_specs", "eval_tasks"):
    for s in c[what]:
      try:
        TaskSpec.from_dict(dict(s))
      except (TypeError, ValueError) as e:
        raise ValueError(f"invalid config: {what} entry {dict(s)!r}: {e}") from e


def to_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json())


def incompatible_keys(stored: dict, current: dict, defaults: dict | None = None) -> list[str]:
  """The keys whose values differ between a stored config and the current one (not resumable).

  A key that the stored config lacks (it was written before the key existed) counts as holding
  its value in ``defaults`` (the defaults of the version that adds a key keep the old behaviour),
  so upgrading metalearn does not strand a run that used no new option.
  """
  defaults = defaults or {}
  at = lambda cfg, k: cfg[k] if k in cfg else defaults.get(k)
  keys = (set(stored) | set(current)) - RESUMABLE_KEYS
  return sorted(k for k in keys if _norm(at(stored, k)) != _norm(at(current, k)))


def _norm(v):
  return json.loads(json.dumps(v))
