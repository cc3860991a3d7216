"""Metrics of training curves: smoothing, final loss, divergence, tuning and speedup.

All functions take numpy arrays of per-step training losses and are pure. Non-finite losses (a run
that blew up) count as ``+inf``, so a diverged curve never "reaches" anything.
"""
from __future__ import annotations

import numpy as np

SMOOTH_FRACTION = 0.05   # running-mean window, as a fraction of the run's steps
TAIL_FRACTION = 0.1      # tuning compares the mean loss over this last part of the run


def window(num_steps: int, fraction: float = SMOOTH_FRACTION) -> int:
  return max(1, int(round(fraction * num_steps)))


def as_inf(curve) -> np.ndarray:
  """float64 copy with NaN and -inf mapped to +inf."""
  c = np.asarray(curve, np.float64).copy()
  c[~np.isfinite(c)] = np.inf
  return c


def smooth(curve, win: int | None = None) -> np.ndarray:
  """Trailing running mean over ``win`` steps (fewer at the start); +inf from the first +inf on."""
  c = as_inf(curve)
  win = window(len(c)) if win is None else max(1, int(win))
  bad = np.cumsum(~np.isfinite(c)) > 0
  csum = np.cumsum(np.where(np.isfinite(c), c, 0.0))
  lagged = np.concatenate([np.zeros(win), csum[:-win]]) if win < len(c) else np.zeros(len(c))
  counts = np.minimum(np.arange(1, len(c) + 1), win)
  out = (csum - lagged[:len(c)]) / counts
  out[bad] = np.inf
  return out


def tail_mean(curves, fraction: float = TAIL_FRACTION) -> np.ndarray:
  """Mean over the last ``fraction`` of steps (last axis); +inf where a run went non-finite."""
  c = as_inf(curves)
  n = c.shape[-1]
  tail = c[..., n - window(n, fraction):].mean(-1)
  return np.where(np.isfinite(c).all(-1), tail, np.inf)


def diverged(curves, initial=None, fraction: float = TAIL_FRACTION) -> np.ndarray:
  """A run diverged if a loss went non-finite or its final (tail-mean) loss exceeds its initial
  loss (``initial[...]``, e.g. measured on a few batches; default: the first step's loss)."""
  c = as_inf(curves)
  initial = c[..., 0] if initial is None else as_inf(initial)
  return ~np.isfinite(c).all(-1) | (tail_mean(c, fraction) > initial)


def steps_to_reach(curve, target: float) -> int:
  """1-based number of steps until ``curve`` first is <= ``target``; 0 if it never is."""
  hits = np.nonzero(as_inf(curve) <= target)[0]
  return int(hits[0]) + 1 if len(hits) else 0


def speedup(rule_curve, baseline_curve, *, win: int | None = None) -> float:
  """How many times fewer steps the rule needs to reach the baseline's final loss.

  Both curves (per-step training losses, e.g. averaged over seeds) are smoothed with a trailing
  running mean of ``win`` steps (default 5% of the baseline's length). The target is the
  baseline's final smoothed loss; the speedup is

      (steps the baseline needs to first reach the target) / (steps the rule needs to)

  so 1.0 means as fast, 2.0 twice as fast, and 0.0 that the rule never reaches the target. NaN
  when the baseline's own final loss is not finite (there is nothing to reach).
  """
  base = smooth(baseline_curve, win if win is not None else window(len(baseline_curve)))
  rule = smooth(rule_curve, win if win is not None else window(len(baseline_curve)))
  target = base[-1]
  if not np.isfinite(target):
    return float("nan")
  rule_steps = steps_to_reach(rule, target)
  return steps_to_reach(base, target) / rule_steps if rule_steps else 0.0


def tune(curves) -> int:
  """Index of the best learning rate of ``curves[lr, seed, step]``: the lowest seed-averaged
  tail-mean loss (non-finite runs count as +inf)."""
  scores = tail_mean(curves).mean(-1)
  return int(np.argmin(scores))


def downsample(curve, max_points: int = 200) -> tuple[list[int], list[float | None]]:
  """(1-based steps, values) at <= ``max_points`` evenly spaced steps; non-finite -> None."""
  c = np.asarray(curve, np.float64)
  idx = np.unique(np.round(np.linspace(0, len(c) - 1, min(len(c), max_points))).astype(int))
  return [int(i) + 1 for i in idx], [float(c[i]) if np.isfinite(c[i]) else None for i in idx]


def summarize(speedups) -> dict:
  """Median, geometric mean (over the tasks where the target was reached) and share reached."""
  s = np.asarray([x for x in speedups if x is not None and np.isfinite(x)], np.float64)
  reached = s[s > 0]
  return {
      "num_tasks": int(len(s)),
      "median_speedup": float(np.median(s)) if len(s) else None,
      "geomean_speedup": float(np.exp(np.mean(np.log(reached)))) if len(reached) else 0.0,
      "num_reached": int(len(reached)),
      "reached_fraction": float(len(reached) / len(s)) if len(s) else None,
  }


def final_losses(curves) -> np.ndarray:
  """Final loss of each configuration of ``curves[..., seed, step]``: the last value of the
  smoothed, seed-averaged curve (+inf if any seed went non-finite)."""
  c = as_inf(curves)
  mean = c.mean(-2)
  return np.array([smooth(m)[-1] for m in mean.reshape(-1, mean.shape[-1])]).reshape(
      mean.shape[:-1])


def trials_to_match(baseline_finals, target: float) -> float:
  """Expected number of random learning-rate trials until one reaches ``target``.

  A trial draws a learning rate uniformly from the grid whose final losses are
  ``baseline_finals`` (a half-decade log grid: log-uniform sampling over its range). With ``k`` of
  the ``n`` grid points at or below ``target``, each trial succeeds with probability ``k / n`` and
  the number of trials until the first success is geometric, with mean ``n / k``. 1.0 means any
  learning rate does as well as the rule; ``n`` that only one does; +inf that none does.
  """
  f = as_inf(baseline_finals).ravel()
  k = int(np.sum(f <= target))
  return len(f) / k if k else float("inf")
