"""Where metrics go while training: a JSON Lines file and TensorBoard event files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)


class MetricsRecorder:
    """Appends one JSON line per log point or evaluation and mirrors scalars to TensorBoard.

    TensorBoard event files need the ``tensorboard`` package; without it only the JSON Lines file
    is written (and a warning logged once).
    """

    def __init__(self, metrics_path: Path, tensorboard_dir: Path) -> None:
        """Create (truncate) ``metrics_path`` and an event file writer in ``tensorboard_dir``.

        Raises:
            OSError: a file or directory cannot be created.
        """
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        tensorboard_dir.mkdir(parents=True, exist_ok=True)
        self._lines = metrics_path.open("w", encoding="utf-8")
        self._writer: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("tensorboard is not installed: no event files in %s", tensorboard_dir)
        else:
            self._writer = SummaryWriter(log_dir=str(tensorboard_dir))

    def record(self, step: int, phase: str, metrics: dict[str, float]) -> None:
        """Write ``metrics`` (Vertex AI names) for ``step``."""
        self._lines.write(json.dumps({"step": step, "phase": phase, **metrics}) + "\n")
        self._lines.flush()
        if self._writer is not None:
            for name, value in metrics.items():
                # Vertex AI's tags carry a leading "/" (SPEC: "/train_total_loss", ...).
                self._writer.add_scalar(f"/{name}", value, global_step=step)

    def close(self) -> None:
        """Flush and close both outputs."""
        self._lines.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> MetricsRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
