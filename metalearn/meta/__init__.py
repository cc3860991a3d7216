"""Meta-training: truncated unrolls, meta-gradient estimators, and the meta-trainer."""
from metalearn.meta.estimators import ES, ESTIMATORS, NRES, PES, TBPTT, make_estimator
from metalearn.meta.unroll import InnerState, UnrollConfig

__all__ = ["ES", "ESTIMATORS", "NRES", "PES", "TBPTT", "make_estimator", "InnerState",
           "UnrollConfig"]
