"""Reading what a finished pipeline job produced: the uploaded model and its metrics."""

from __future__ import annotations

from typing import Any

from distillery.ports import PipelineJobInfo


def read_outputs(info: PipelineJobInfo) -> dict[str, Any]:
    """``{"model": resource name, "metrics": {name: value}}`` as far as the job exposes them."""
    return {}
