"""The ``metalearn`` command: demo, meta-train, evaluate, report."""
from __future__ import annotations

import argparse
import os
import sys

USAGE = """metalearn meta-train --workdir DIR [--config experiments/NAME.py] [--config.KEY=VALUE ...]
                   [--multihost [--coordinator_address HOST:PORT --num_processes N --process_id I]]
metalearn evaluate   --optimizer pretrained:NAME|init:RULE|WORKDIR|FILE.safetensors --suite NAME
                     --workdir DIR [--seeds N]
metalearn report     DIR
metalearn demo       [--workdir DIR]     (the embedded default: meta-train, evaluate, report)
metalearn search     --config experiments/search_NAME.py --workdir DIR [--storage URL]
                     [--sampler tpe|cmaes|random|grid] [--trials N]   (HPO with Optuna, or PBT)
metalearn self-improve --config experiments/self_improve.py --workdir DIR [--config.KEY=VALUE ...]
metalearn campaign   --config experiments/campaign_NAME.py --workdir DIR [--stages rule,search,...]
                     (meta-train or take a rule, architecture search with it, final training, report)
metalearn --version

Every command compiles through JAX's persistent compilation cache in ~/.cache/metalearn/jax (set
METALEARN_COMPILE_CACHE=0 to turn it off, or to a directory to move it), so a second run of the
same job compiles in seconds."""

SIGNAL_CODES = {"SIGTERM": 143, "SIGINT": 130}   # 128 + signal number, as shells report them


def enable_compile_cache() -> None:
  where = os.environ.get("METALEARN_COMPILE_CACHE", "")
  if where == "0":
    return
  import jax
  path = where or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                               "metalearn", "jax")
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _split_config_flags(argv):
  rest, flags = [], []
  for a in argv:
    (flags if a.startswith("--config.") else rest).append(a[len("--config."):]
                                                          if a.startswith("--config.") else a)
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
  p.add_argument("--multihost_timeout", type=int, default=120,
                 help="seconds to wait for the coordinator before giving up")
  args = p.parse_args(argv)
  from metalearn.meta import config as config_lib
  config = config_lib.load_config(args.config)
  config_lib.apply_flags(config, flags)
  if args.multihost or config.multihost:
    from metalearn import parallel
    parallel.initialize_distributed(
        args.coordinator_address or config.coordinator_address or None,
        args.num_processes or config.num_processes or None,
        args.process_id if args.process_id is not None else (
            config.process_id if config.process_id >= 0 else None),
        timeout_s=args.multihost_timeout)
  from metalearn.meta.train import train_and_evaluate
  result = train_and_evaluate(config, args.workdir)
  if result.preempted:
    print(f"preempted ({result.signal}): saved outer step {result.step} in {args.workdir}; run the "
          "same command to resume.")
    return SIGNAL_CODES.get(result.signal, 143)
  loss = result.metrics.get("meta_loss")
  print(f"meta-training done: outer step {result.step}"
        + (f", meta-loss {float(loss):.4g}" if loss is not None else "") + ".\n"
        f"  meta-parameters: {os.path.join(args.workdir, 'theta.safetensors')}\n"
        f"  logs: {os.path.join(args.workdir, 'metrics.jsonl')}, TensorBoard: tensorboard "
        f"--logdir {os.path.join(args.workdir, 'tensorboard')}\n"
        f"  next: metalearn evaluate --optimizer {args.workdir} --suite out_of_distribution "
        f"--workdir {args.workdir}/eval")
  return 0


def evaluate(argv) -> int:
  p = argparse.ArgumentParser(prog="metalearn evaluate")
  p.add_argument("--optimizer", required=True,
                 help="pretrained:NAME, init:RULE, a meta-train workdir or a .safetensors file")
  p.add_argument("--suite", required=True, help="tiny, demo, in_distribution, out_of_distribution")
  p.add_argument("--workdir", required=True)
  p.add_argument("--seeds", type=int, default=None, help="seeds per run (default 2)")
  p.add_argument("--cache_dir", default=None,
                 help="where grids of runs are cached (default WORKDIR/runs); the baselines' "
                      "grids do not depend on the rule, so evaluations of several rules can share it")
  p.add_argument("--baselines", default=None,
                 help="comma-separated tuned baselines to compare with (default: all of "
                      "adam,adamw,adamw_cosine,sgdm; adam is required)")
  args = p.parse_args(argv)
  from metalearn.evaluate import run_evaluation, summary_text
  results = run_evaluation(args.optimizer, args.suite, args.workdir, seeds=args.seeds,
                           cache_dir=args.cache_dir,
                           baselines=args.baselines.split(",") if args.baselines else None)
  print(summary_text(results, args.workdir))
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


def search(argv) -> int:
  p = argparse.ArgumentParser(prog="metalearn search")
  p.add_argument("--config", required=True, help="Python file with get_config() (a dict)")
  p.add_argument("--workdir", required=True)
  p.add_argument("--storage", default=None,
                 help="database URL shared by workers (default: sqlite:///WORKDIR/study.db)")
  p.add_argument("--sampler", default=None, help="tpe, cmaes, random or grid (default: config)")
  p.add_argument("--trials", type=int, default=None, help="trials in the study (default: config)")
  args = p.parse_args(argv)
  from metalearn.search import load_config, run_search
  summary = run_search(load_config(args.config), args.workdir, storage=args.storage,
                       sampler=args.sampler, trials=args.trials)
  print(f"search done: best value {summary.get('best_value')} with {summary.get('best_params')}\n"
        f"  results: {os.path.join(args.workdir, 'results.json')}, report: "
        f"{os.path.join(args.workdir, 'report.md')}")
  return 0


def campaign(argv) -> int:
  p = argparse.ArgumentParser(prog="metalearn campaign")
  p.add_argument("--config", required=True, help="Python file with get_config() (a dict)")
  p.add_argument("--workdir", required=True)
  p.add_argument("--stages", default=None, help="comma-separated subset of rule,search,final,report")
  args = p.parse_args(argv)
  from metalearn.search.campaign import load_config, run_campaign
  results = run_campaign(load_config(args.config), args.workdir,
                         stages=args.stages.split(",") if args.stages else None)
  report = (results.get("report") or {}).get("report")
  print(f"campaign done: {args.workdir}" + (f", report: {report}" if report else ""))
  return 0


def self_improve(argv) -> int:
  argv, flags = _split_config_flags(argv)
  p = argparse.ArgumentParser(prog="metalearn self-improve")
  p.add_argument("--workdir", required=True)
  p.add_argument("--config", default=None, help="Python file with get_config(); default if omitted")
  args = p.parse_args(argv)
  from metalearn.meta import config as config_lib
  from metalearn.meta import self_improve as si
  config = si.load_config(args.config)
  config_lib.apply_flags(config, flags)
  result = si.self_improve(config, args.workdir)
  if result.preempted:
    print(f"preempted ({result.signal}) after generation {result.generation} in {args.workdir}; "
          "run the same command to resume.")
    return SIGNAL_CODES.get(result.signal, 143)
  print(f"self-improvement done: generation {result.generation}, best fitness "
        f"{result.best_fitness:.4g}.\n  lineage: {os.path.join(args.workdir, si.LINEAGE)}\n"
        f"  next: metalearn report {args.workdir}")
  return 0


COMMANDS = {"meta-train": meta_train, "evaluate": evaluate, "report": report, "demo": demo,
            "search": search, "self-improve": self_improve, "campaign": campaign}


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] == "--version":
    from metalearn import __version__
    print(f"metalearn {__version__}")
    return 0
  if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
    print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
    return 0 if not argv or argv[0] in ("-h", "--help") else 2
  from metalearn.checkpoint import CheckpointError
  enable_compile_cache()
  try:
    return COMMANDS[argv[0]](argv[1:])
  except (ValueError, OSError, CheckpointError) as e:  # user errors; bugs keep their traceback
    if os.environ.get("METALEARN_DEBUG"):
      raise
    print(f"metalearn {argv[0]}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"metalearn {argv[0]}: interrupted.", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
