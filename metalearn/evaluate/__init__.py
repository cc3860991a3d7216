"""Successor training against tuned baselines, metrics and reports.

    from metalearn.evaluate import run_evaluation, summary_text, write_report
    results = run_evaluation("pretrained:default", "demo", "runs/eval")  # -> runs/eval/results.json
    print(summary_text(results))                                         # headline numbers, next step
    write_report("runs/eval")                                   # -> runs/eval/report.md + PNGs
"""
from metalearn.evaluate.baselines import BASELINES
from metalearn.evaluate.demo import run_demo
from metalearn.evaluate.files import WorkdirError
from metalearn.evaluate.metrics import speedup, trials_to_match
from metalearn.evaluate.report import write_report
from metalearn.evaluate.runner import run_evaluation
from metalearn.evaluate.suites import SUITES, get_suite
from metalearn.evaluate.summary import summary_text

__all__ = ["run_evaluation", "write_report", "run_demo", "speedup", "trials_to_match",
           "summary_text", "get_suite", "SUITES", "BASELINES", "WorkdirError"]
