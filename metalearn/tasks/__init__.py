"""Tasks (model + data + batch sampler + loss as pure functions), task families, inner training."""
from metalearn.tasks import builders  # noqa: F401  (registers the built-in kinds)
from metalearn.tasks.base import KINDS, Task, TaskSpec, make_task, register_kind
from metalearn.tasks.families import (CharLMFamily, CNNFamily, Family, FAMILIES, ImageMLPFamily,
                                      LinearRegressionFamily, QuadraticFamily, make_family)

__all__ = ["KINDS", "Task", "TaskSpec", "make_task", "register_kind", "Family", "FAMILIES",
           "ImageMLPFamily", "CNNFamily", "CharLMFamily", "QuadraticFamily",
           "LinearRegressionFamily", "make_family"]
