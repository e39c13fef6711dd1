"""Metrics as JSON lines and TensorBoard events in the workdir, plus a progress bar."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from jaxssl.output_paths import atomic_write


class MetricsLogger:
    """Writes ``<workdir>/metrics.jsonl`` and TensorBoard events in ``<workdir>/tensorboard``.

    Only process 0 writes. The JSONL file is appended to, so a resumed run continues the curve:
    rows past ``initial_step`` (logged after the checkpoint the run resumes from) are dropped
    first (:func:`drop_rows_after`), and TensorBoard is told to purge its events past that step,
    so both read as one run.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> log = MetricsLogger(d, total_steps=10, batch_size=4, progress=False)
    >>> log.write(1, {"loss": 1.5})
    >>> log.close()
    >>> open(os.path.join(d, "metrics.jsonl")).read().strip()
    '{"step": 1, "loss": 1.5}'
    """

    def __init__(self, workdir: str, *, total_steps: int, batch_size: int, initial_step: int = 0,
                 progress: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.batch_size = batch_size
        self.total_steps = total_steps
        self._bar = None
        self._tb = None
        self._file = None
        self._last = (time.perf_counter(), initial_step)
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        dropped = drop_rows_after(path, initial_step)
        if dropped:
            print(f"Dropped {dropped} rows past step {initial_step} from {path} "
                  "(logged after the checkpoint this run resumes from).")
        self._file = open(path, "a", encoding="utf-8")
        # Lazy, and without torch: tensorboardX imports torch when it is installed (~4 s).
        self._tb = _summary_writer_class()(os.path.join(workdir, "tensorboard"),
                                           purge_step=initial_step + 1)
        if progress:
            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step",
                             dynamic_ncols=True, mininterval=1.0)

    def set_total(self, total_steps: int) -> None:
        """Updates the ETA once a wall-clock budget has fixed the step count."""
        self.total_steps = total_steps
        if self._bar is not None:
            self._bar.total = total_steps
            self._bar.refresh()

    def images_per_second(self, step: int) -> float:
        now = time.perf_counter()
        t0, s0 = self._last
        self._last = (now, step)
        return (step - s0) * self.batch_size / max(now - t0, 1e-9)

    def write(self, step: int, metrics: dict) -> None:
        """Logs scalar metrics of ``step`` (NaN and Inf are written as strings in the JSONL)."""
        if not self.enabled:
            return
        row = {"step": int(step)}
        for k, v in metrics.items():
            v = float(np.asarray(v))
            row[k] = v if math.isfinite(v) else str(v)
            self._tb.add_scalar(k, v, int(step))
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._bar is not None:
            shown = {k: row[k] for k in ("loss", "images_per_s") if k in row}
            self._bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v
                                   for k, v in shown.items()})

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._file is not None:
            self._file.close()


def drop_rows_after(path: str, step: int) -> int:
    """Removes the rows of JSONL ``path`` whose step is past ``step`` (and torn, unparseable
    lines, as a ``kill -9`` mid-write leaves) by an atomic rewrite; returns how many went.

    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "m.jsonl")
    >>> _ = open(p, "w").write('{"step": 1}\\n{"step": 2}\\n{"step": 3}\\n{"st')
    >>> drop_rows_after(p, 2), open(p).read()
    (2, '{"step": 1}\\n{"step": 2}\\n')
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        return 0
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and int(row.get("step", 0)) <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if len(kept) == len(lines) and all(line.endswith("\n") for line in lines):
        return 0
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
    return len(lines) - len(kept)


def _summary_writer_class() -> type:
    """tensorboardX's SummaryWriter, imported without torch.

    tensorboardX imports torch, when installed, only to accept torch tensors (1-2 s of every
    start-up); this logger writes Python floats, so torch is hidden for the duration of the
    import (an ImportError, which tensorboardX expects) and left importable afterwards.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter
