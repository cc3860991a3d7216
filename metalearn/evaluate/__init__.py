"""Successor training against tuned baselines, metrics and reports.

    from metalearn.evaluate import run_evaluation, write_report
    run_evaluation("pretrained:default", "demo", "runs/eval")   # -> runs/eval/results.json
    write_report("runs/eval")                                   # -> runs/eval/report.md + PNGs
"""
from metalearn.evaluate.demo import run_demo
from metalearn.evaluate.metrics import speedup
from metalearn.evaluate.report import write_report
from metalearn.evaluate.runner import BASELINES, run_evaluation
from metalearn.evaluate.suites import SUITES, get_suite

__all__ = ["run_evaluation", "write_report", "run_demo", "speedup", "get_suite", "SUITES",
           "BASELINES"]
