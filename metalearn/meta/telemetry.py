"""Metrics as JSONL and TensorBoard events in the workdir, and a progress bar (process 0 only)."""
from __future__ import annotations

import json
import math
import os


def _scalar(v):
  try:
    f = float(v)
  except (TypeError, ValueError):
    return None
  return f if math.isfinite(f) else str(f)


class Telemetry:

  def __init__(self, workdir: str, *, start_step: int, total_steps: int, enabled: bool = True,
               progress: bool = True):
    self.enabled = enabled
    self._bar = None
    self._tb = None
    if not enabled:
      return
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._truncate_after(start_step)  # a resumed run rewrites the steps it replays
    self._file = open(self.path, "a")
    try:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start_step + 1)
    except Exception as e:  # pragma: no cover - tensorboardX is a dependency
      print(f"TensorBoard logging disabled: {e}")
    if progress:
      from tqdm.auto import tqdm
      self._bar = tqdm(total=total_steps, initial=start_step, desc="meta-train", unit="step",
                       dynamic_ncols=True)

  def _truncate_after(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      keep = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(keep)
    os.replace(tmp, self.path)

  def log(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step)}
    for k, v in metrics.items():
      s = _scalar(v)
      if s is not None:
        row[k] = s
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, float):
          self._tb.add_scalar(k, v, step)
    if self._bar is not None:
      post = {k: f"{row[k]:.4g}" for k in ("meta_loss", "inner_steps_per_s") if k in row}
      self._bar.set_postfix(post, refresh=False)
      self.advance(step)

  def advance(self, step: int) -> None:
    if self._bar is not None:
      self._bar.update(step - self._bar.n)

  def close(self) -> None:
    if not self.enabled:
      return
    self._file.close()
    if self._tb is not None:
      self._tb.close()
    if self._bar is not None:
      self._bar.close()
