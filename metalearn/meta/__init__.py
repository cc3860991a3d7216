"""Meta-training: truncated unrolls, meta-gradient estimators, the sharded outer step and the loop."""
from metalearn.meta.estimators import ES, ESTIMATORS, NRES, PES, TBPTT, Estimator, make_estimator
from metalearn.meta.unroll import InnerState, Problem, UnrollConfig

__all__ = ["ES", "ESTIMATORS", "NRES", "PES", "TBPTT", "Estimator", "make_estimator",
           "InnerState", "Problem", "UnrollConfig"]
