"""Cloud Functions (2nd gen) entry points. Thin adapters: all logic lives in ``distillery``.

Deployed with this file as ``main.py`` at the source root; locally served by functions-framework
(``distillery dev up``). Heavy clients are imported lazily, on the first event.
"""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from distillery.runtime import run_handler


@functions_framework.cloud_event
def validate_dataset(cloud_event: CloudEvent) -> None:
    """Validate a dataset dropped under ``datasets/`` (Eventarc: storage object finalized)."""
    from distillery.datasets import handle_storage_event

    run_handler("validate_dataset", cloud_event, handle_storage_event)


@functions_framework.cloud_event
def launch_job(cloud_event: CloudEvent) -> None:
    """Submit one Vertex AI distillation job per LaunchRequest (topic distill-launch-requests)."""
    from distillery.launcher import handle_launch_event

    run_handler("launch_job", cloud_event, handle_launch_event)
