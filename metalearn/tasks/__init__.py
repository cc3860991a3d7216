"""Tasks (model + data + batch sampler + loss as pure functions) and task families."""
from metalearn.tasks.base import KINDS, Task, TaskSpec, make_task
from metalearn.tasks.families import (CharLMFamily, CNNFamily, Family, FAMILIES, ImageMLPFamily,
                                      LinearRegressionFamily, QuadraticFamily, make_family)

__all__ = ["KINDS", "Task", "TaskSpec", "make_task", "Family", "FAMILIES", "ImageMLPFamily",
           "CNNFamily", "CharLMFamily", "QuadraticFamily", "LinearRegressionFamily", "make_family"]
