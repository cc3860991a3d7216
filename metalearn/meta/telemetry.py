"""Metrics as JSONL and TensorBoard events in the workdir, and a progress bar (process 0 only)."""
from __future__ import annotations

import json
import math
import warnings

from etils import epath

from metalearn.files import atomic_write


def _scalar(v):
  try:
    f = float(v)
  except (TypeError, ValueError):
    return None
  return f if math.isfinite(f) else str(f)


class Telemetry:

  def __init__(self, workdir: str, *, start_step: int, total_steps: int, enabled: bool = True,
               progress: bool = True, desc: str = "meta-train"):
    self.enabled = enabled
    self._bar = None
    self._tb = None
    if not enabled:
      return
    # Rows are kept in memory and the file rewritten whole (atomically where the filesystem
    # allows), which also works on gs://, where files cannot be appended to.
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self._rows = self._rows_up_to(start_step)  # a resumed run rewrites the steps it replays
    self._flush()
    try:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"), purge_step=start_step + 1)
    except Exception as e:  # tensorboardX may lack a writer for this filesystem
      print(f"TensorBoard logging disabled: {e}")
    if progress:
      from tqdm.auto import tqdm
      self._bar = tqdm(total=total_steps, initial=start_step, desc=desc, unit="step",
                       dynamic_ncols=True)

  def _rows_up_to(self, step: int) -> list[str]:
    """The log's rows up to ``step``; a torn or unreadable line (a run killed mid-write) is dropped
    with a warning naming the file, since the log is a record, not state."""
    if not self.path.exists():
      return []
    rows = []
    for i, line in enumerate(self.path.read_text().splitlines()):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        warnings.warn(f"{self.path}: line {i + 1} is not valid JSON (torn by an interrupted "
                      "write?); dropping it.", stacklevel=3)
        continue
      if row.get("step", 0) <= step:
        rows.append(line + "\n")
    return rows

  def _flush(self) -> None:
    atomic_write(self.path, "".join(self._rows))

  def log(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step)}
    for k, v in metrics.items():
      s = _scalar(v)
      if s is not None:
        row[k] = s
    self._rows.append(json.dumps(row) + "\n")
    self._flush()
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, float):
          self._tb.add_scalar(k, v, step)
      self._tb.flush()  # a killed run keeps every logged step in TensorBoard
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
    if self._tb is not None:
      self._tb.close()
    if self._bar is not None:
      self._bar.close()
