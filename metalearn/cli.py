"""The ``metalearn`` command: meta-train, evaluate, report."""
from __future__ import annotations

import argparse
import os
import sys

USAGE = """metalearn meta-train --workdir DIR [--config experiments/NAME.py] [--config.KEY=VALUE ...]
                   [--multihost [--coordinator_address HOST:PORT --num_processes N --process_id I]]
metalearn evaluate   --optimizer pretrained:NAME|DIR --suite NAME --workdir DIR
metalearn report     DIR
metalearn demo       [--workdir DIR]     (the embedded default: meta-train, evaluate, report)"""


def _split_config_flags(argv):
  rest, flags = [], []
  for a in argv:
    if a.startswith("--config."):
      flags.append(a[len("--config."):])
    else:
      rest.append(a)
  return rest, flags


def meta_train(argv) -> int:
  argv, flags = _split_config_flags(argv)
  p = argparse.ArgumentParser(prog="metalearn meta-train")
  p.add_argument("--workdir", required=True)
  p.add_argument("--config", default=None, help="Python file with get_config(); default config if omitted")
  p.add_argument("--multihost", action="store_true", help="start jax.distributed first")
  p.add_argument("--coordinator_address", default=None)
  p.add_argument("--num_processes", type=int, default=None)
  p.add_argument("--process_id", type=int, default=None)
  args = p.parse_args(argv)
  from metalearn.meta import config as config_lib
  config = config_lib.load_config(args.config)
  config_lib.apply_flags(config, flags)
  multihost = args.multihost or config.multihost
  if multihost:
    from metalearn import parallel
    parallel.initialize_distributed(
        args.coordinator_address or config.coordinator_address or None,
        args.num_processes or config.num_processes or None,
        args.process_id if args.process_id is not None else (
            config.process_id if config.process_id >= 0 else None))
  from metalearn.meta.trainer import MetaTrainer
  trainer = MetaTrainer(config, args.workdir)
  trainer.train()
  return 143 if trainer.preempted else 0  # 128 + SIGTERM: supervisors see an unfinished run


def evaluate(argv) -> int:
  p = argparse.ArgumentParser(prog="metalearn evaluate")
  p.add_argument("--optimizer", required=True, help="pretrained:NAME or a meta-train workdir")
  p.add_argument("--suite", required=True)
  p.add_argument("--workdir", required=True)
  p.add_argument("--seeds", type=int, default=None)
  args = p.parse_args(argv)
  from metalearn.evaluate import run_evaluation
  run_evaluation(args.optimizer, args.suite, args.workdir, seeds=args.seeds)
  return 0


def report(argv) -> int:
  p = argparse.ArgumentParser(prog="metalearn report")
  p.add_argument("dir")
  args = p.parse_args(argv)
  from metalearn.evaluate import write_report
  print(write_report(args.dir))
  return 0


def demo(argv) -> int:
  p = argparse.ArgumentParser(prog="metalearn demo")
  p.add_argument("--workdir", default="runs/demo")
  args = p.parse_args(argv)
  from metalearn.evaluate import run_demo
  run_demo(args.workdir)
  return 0


COMMANDS = {"meta-train": meta_train, "evaluate": evaluate, "report": report, "demo": demo}


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
    print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
    return 0 if not argv or argv[0] in ("-h", "--help") else 2
  try:
    return COMMANDS[argv[0]](argv[1:])
  except (ValueError, FileNotFoundError, PermissionError, TypeError) as e:
    if os.environ.get("METALEARN_DEBUG"):
      raise
    print(f"metalearn {argv[0]}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
