"""Automated search: Optuna HPO asked and told in vmapped batches, population-based training,
architecture search (``nas``, ``nas_space``, ``nas_train``) and campaigns (``campaign``).

    from metalearn.search import Space, open_study, OptimizerTarget, optimize, run_search
    from metalearn.search import ArchSpace, make_space, make_strategy, Trainer

See docs/search.md.
"""
from metalearn.search.batched import BatchRun, optimizer_family, schedule
from metalearn.search.hpo import OptimizerTarget, optimize
from metalearn.search.nas import RandomSearch, RegularizedEvolution, TPESearch, make_strategy
from metalearn.search.nas_space import ArchFamily, ArchSpace, make_space
from metalearn.search.nas_train import Trainer
from metalearn.search.pbt import PBT
from metalearn.search.runner import check_config, load_config, run_search
from metalearn.search.space import Space
from metalearn.search.study import (PRUNERS, SAMPLERS, make_pruner, make_sampler, open_storage,
                                    open_study, recover_stale_trials)

__all__ = ["PBT", "BatchRun", "optimizer_family", "schedule", "OptimizerTarget", "optimize",
           "check_config", "load_config", "run_search", "Space", "PRUNERS", "SAMPLERS",
           "make_pruner", "make_sampler", "open_storage", "open_study", "recover_stale_trials",
           "RandomSearch", "RegularizedEvolution", "TPESearch", "make_strategy", "ArchFamily",
           "ArchSpace", "make_space", "Trainer"]
