"""Automated search: Optuna HPO asked and told in vmapped batches, population-based training.

    from metalearn.search import Space, open_study, OptimizerTarget, optimize, run_search

See docs/search.md.
"""
from metalearn.search.batched import BatchRun, optimizer_family, schedule
from metalearn.search.hpo import OptimizerTarget, optimize
from metalearn.search.pbt import PBT
from metalearn.search.runner import check_config, load_config, run_search
from metalearn.search.space import Space
from metalearn.search.study import (PRUNERS, SAMPLERS, make_pruner, make_sampler, open_storage,
                                    open_study, recover_stale_trials)

__all__ = ["PBT", "BatchRun", "optimizer_family", "schedule", "OptimizerTarget", "optimize",
           "check_config", "load_config", "run_search", "Space", "PRUNERS", "SAMPLERS",
           "make_pruner", "make_sampler", "open_storage", "open_study", "recover_stale_trials"]
