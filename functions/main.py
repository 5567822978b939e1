"""Cloud Functions (2nd gen) entry points. Thin adapters: all logic lives in ``distillery``.

Deployed with this file as ``main.py`` at the source root; locally served by functions-framework
(``distillery dev up``). Heavy clients are imported lazily, on the first event.
"""

from __future__ import annotations

import flask
import functions_framework
from cloudevents.http import CloudEvent

from distillery.core.runtime import run_handler


@functions_framework.cloud_event
def validate_dataset(cloud_event: CloudEvent) -> None:
    """Validate a dataset dropped under ``datasets/`` (Eventarc: storage object finalized)."""
    from distillery.services.datasets import handle_storage_event

    run_handler("validate_dataset", cloud_event, handle_storage_event)


@functions_framework.cloud_event
def launch_job(cloud_event: CloudEvent) -> None:
    """Submit one Vertex AI distillation job per LaunchRequest (topic distill-launch-requests)."""
    from distillery.services.launcher import handle_launch_event

    run_handler("launch_job", cloud_event, handle_launch_event)


@functions_framework.cloud_event
def track_status(cloud_event: CloudEvent) -> None:
    """Apply a pipeline job state change to its job record (topic distill-job-events)."""
    from distillery.services.status import handle_job_event

    run_handler("track_status", cloud_event, handle_job_event)


@functions_framework.cloud_event
def promote_model(cloud_event: CloudEvent) -> None:
    """Gate a SUCCEEDED job's model and promote it to its endpoint (topic distill-job-status)."""
    if _state_of(cloud_event) not in (None, "SUCCEEDED"):
        return  # Every other state change reaches this topic too: dropped before any client.
    from distillery.services.promoter import handle_status_event

    run_handler("promote_model", cloud_event, handle_status_event)


def _state_of(cloud_event: CloudEvent) -> str | None:
    """The ``state`` attribute of the Pub/Sub message inside ``cloud_event`` (None: absent)."""
    data = cloud_event.get_data()
    message = data.get("message") if isinstance(data, dict) else None
    attributes = message.get("attributes") if isinstance(message, dict) else None
    state = attributes.get("state") if isinstance(attributes, dict) else None
    return state if isinstance(state, str) else None


def _scheduled(request: flask.Request, name: str) -> flask.typing.ResponseReturnValue:
    """Run the status service's polling pass ``name`` for a Cloud Scheduler POST; its summary.

    Jobs that could not be polled, and those the time budget did not reach (``complete``:
    false), are taken up by the next run; the scheduler sees a 200.
    """
    if request.method != "POST":
        return flask.jsonify({"error": "Cloud Scheduler calls this function with POST"}), 405
    from distillery.core.runtime import default_dependencies
    from distillery.services import status

    summary = getattr(status, name)(default_dependencies())
    return flask.jsonify(
        {
            "checked": summary.checked,
            "moved": summary.moved,
            "errors": summary.errors,
            "complete": summary.complete,
        }
    )


@functions_framework.http
def reconcile(request: flask.Request) -> flask.typing.ResponseReturnValue:
    """Poll Vertex AI for unfinished jobs and apply missed transitions (Cloud Scheduler, HTTP)."""
    return _scheduled(request, "reconcile")


@functions_framework.http
def poll_tuning_jobs(request: flask.Request) -> flask.typing.ResponseReturnValue:
    """Poll the tuning jobs of active gemini jobs and apply their states (Cloud Scheduler, HTTP,
    every minute: tuning jobs announce no state changes)."""
    return _scheduled(request, "poll_tuning_jobs")
