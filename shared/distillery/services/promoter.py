"""The promoter: a SUCCEEDED job's model → the endpoint of its family, when it earns it.

``promote_model`` listens on ``distill-job-status`` and acts on SUCCEEDED only (other states are
dropped from the message attributes, before the body is parsed). For a job it:

1. reads the model and eval metrics track_status recorded on the job (the selected checkpoint's
   when checkpoint selection is on; the Model Registry entry's metadata when the job has none);
2. decides once: the metrics are gated on the thresholds of the settings (or those the job's
   config sidecar or rerun set: ``min_eval_accuracy`` and the like) and against the current
   champion of the model's family (``models/{family}``, family = the job's model display name),
   and the decision is written on the job (``promotion``) with a compare-and-set, so a
   redelivery never flips it;
3. REJECTED: the job moves SUCCEEDED → REJECTED with a ``reason`` that lists every failed rule
   with the figures compared (and the champion's);
4. PROMOTED: finds the endpoint named after the family (creates it when there is none), deploys
   the model unless the endpoint already serves it (with the canary share of the traffic when
   a champion is serving and ``DISTILLERY_CANARY_PERCENT`` is set), makes it the champion (the
   previous one joins ``history``, for rollback), undeploys older models that no longer serve,
   then moves the job to PROMOTED with ``endpoint`` set and announces it.

Every step converges, so an event delivered again after a crash at any point finishes the work and
never deploys twice. :func:`rollback` restores a family's previous champion: the family's record
keeps what was rolled back (``rolled_back``), and the job whose model was taken off moves
PROMOTED → ROLLED_BACK, announced on the status topic like every state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from distillery.core.errors import (
    ObjectNotFoundError,
    PermanentError,
    QuotaExceededError,
    RetryableError,
)
from distillery.core.events import CloudEventLike, parse_message, parse_pubsub_event
from distillery.core.jobs import announce, transition
from distillery.core.models import JobState, StatusEvent
from distillery.core.ports import location_of
from distillery.core.runtime import Dependencies
from distillery.core.settings import PROMOTION_GATE_KEYS, Settings

logger = logging.getLogger(__name__)

ACCURACY = "eval_fraction_of_correct_next_step_preds"
LOSS = "eval_total_loss"
PREDICTIONS = "eval_num_predictions"

#: Float sums (champion + margin) must not reject a model that meets the margin exactly.
_TOLERANCE = 1e-9

PROMOTE = "promote"
REJECT = "reject"

#: How long one delivery's claim on deploying a job's model keeps other deliveries from deploying
#: it too: as long as the Vertex AI adapter waits for a deployment's operation.
DEPLOY_CLAIM_SECONDS = 1800


class UnknownJobError(PermanentError):
    """A status event names a job that has no record."""


class NothingToRollBackError(PermanentError):
    """The family has no champion, or no previous champion to restore."""


@dataclass(frozen=True)
class Thresholds:
    """The gates a model must pass: the settings', or the job's config where it sets them."""

    min_eval_accuracy: float = 0.0
    max_eval_loss: float = 0.0
    min_eval_predictions: int = 0
    promotion_margin: float = 0.0
    promote_without_eval: bool = False
    #: Where each gate comes from, as reasons name it (default: the setting's variable).
    sources: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, settings: Settings, overrides: Mapping[str, Any] | None = None
    ) -> Thresholds:
        """The thresholds ``settings`` set, with the gates of ``overrides`` (a job's config
        sidecar and ``--set`` values, already validated) in their place."""
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in PROMOTION_GATE_KEYS:
            given = (overrides or {}).get(name)
            if given is None or isinstance(given, bool):
                values[name] = getattr(settings, name)
                sources[name] = settings.env_name(name)
            else:
                values[name] = type(getattr(settings, name))(given)
                sources[name] = f"the job's config {name}"
        return cls(**values, promote_without_eval=settings.promote_without_eval, sources=sources)

    def source(self, name: str) -> str:
        """Where gate ``name`` was set, for reasons."""
        return self.sources.get(name) or f"DISTILLERY_{name.upper()}"


@dataclass(frozen=True)
class Outcome:
    """What the promoter did with one job."""

    job_id: str
    state: JobState
    endpoint: str | None = None
    reason: str | None = None


def _figure(value: float) -> str:
    return f"{value:.4g}"


def gate(
    metrics: Mapping[str, float],
    thresholds: Thresholds,
    champion: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every rule ``metrics`` fail, each with the figures compared; empty when all pass.

    ``champion`` is the family's ``models/{family}`` champion entry (``job_id``, ``model``,
    ``metrics``), or None when the family has none.
    """
    failures: list[str] = []
    accuracy = metrics.get(ACCURACY)
    if accuracy is None and not thresholds.promote_without_eval:
        failures.append(
            f"no eval metrics ({ACCURACY}): a model is promoted on evaluation data "
            "(DISTILLERY_PROMOTE_WITHOUT_EVAL is off)"
        )
    if accuracy is not None and accuracy < thresholds.min_eval_accuracy:
        failures.append(
            f"{ACCURACY} {_figure(accuracy)} is below the minimum "
            f"{_figure(thresholds.min_eval_accuracy)} ({thresholds.source('min_eval_accuracy')})"
        )
    if accuracy is not None and thresholds.max_eval_loss > 0:
        loss = metrics.get(LOSS)
        if loss is None:
            failures.append(f"{LOSS} is missing; {thresholds.source('max_eval_loss')} needs it")
        elif loss > thresholds.max_eval_loss:
            failures.append(
                f"{LOSS} {_figure(loss)} is above the maximum "
                f"{_figure(thresholds.max_eval_loss)} ({thresholds.source('max_eval_loss')})"
            )
    if accuracy is not None and thresholds.min_eval_predictions > 0:
        predictions = metrics.get(PREDICTIONS)
        if predictions is None:
            failures.append(
                f"{PREDICTIONS} is missing; {thresholds.source('min_eval_predictions')} needs it"
            )
        elif predictions < thresholds.min_eval_predictions:
            failures.append(
                f"{PREDICTIONS} {_figure(predictions)} is below the minimum "
                f"{thresholds.min_eval_predictions} ({thresholds.source('min_eval_predictions')})"
            )
    if champion:
        failures.extend(_against_champion(accuracy, thresholds, champion))
    return failures


def _against_champion(
    accuracy: float | None, thresholds: Thresholds, champion: Mapping[str, Any]
) -> list[str]:
    """The champion rule: beat its eval accuracy by the margin (never be worse)."""
    theirs = (champion.get("metrics") or {}).get(ACCURACY)
    who = f"the champion (job {champion.get('job_id')}, model {champion.get('model')})"
    if theirs is None:
        return []  # A champion promoted without eval data: nothing to compare against.
    if accuracy is None:
        return [
            f"no {ACCURACY} to compare with the {_figure(theirs)} of {who}: "
            "it could be worse than the champion"
        ]
    needed = theirs + thresholds.promotion_margin
    if accuracy < needed - _TOLERANCE:
        return [
            f"{ACCURACY} {_figure(accuracy)} does not beat the {_figure(theirs)} of {who} by the "
            f"margin {_figure(thresholds.promotion_margin)} "
            f"({thresholds.source('promotion_margin')}; needs at least {_figure(needed)})"
        ]
    return []


def handle_status_event(event: CloudEventLike, deps: Dependencies) -> Outcome | None:
    """Entry for ``promote_model``: act on a SUCCEEDED StatusEvent; ignore every other state.

    Raises:
        InvalidEventError: the event or the StatusEvent is malformed (recorded, acknowledged).
        PermanentError: the job cannot be promoted as it stands (recorded, acknowledged).
        RetryableError: a backing service failed; the event should be delivered again.
    """
    parsed = parse_pubsub_event(event)
    state = parsed.message.attributes.get("state")
    if state is not None and state != JobState.SUCCEEDED.value:
        return None  # Cheap: most status events are not ours, and need no parsing.
    status = parse_message(parsed.message.data, StatusEvent)
    if status.state is not JobState.SUCCEEDED:
        return None
    return promote(status.job_id, deps)


def promote(job_id: str, deps: Dependencies) -> Outcome | None:
    """Promote or reject job ``job_id`` (idempotent); None when the job is not SUCCEEDED.

    Raises:
        UnknownJobError: there is no such job.
        PermanentError: the endpoint or the model refuses the deployment.
        RetryableError: a backing service failed; calling again is safe.
    """
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    if record is None:
        raise UnknownJobError(f"there is no job {job_id} to promote")
    state = JobState(record["state"])
    if state in (JobState.PROMOTED, JobState.REJECTED):
        announce(deps, record)  # A crash after the transition: announce it now.
        return Outcome(job_id, state, record.get("endpoint"), record.get("reason"))
    if state is not JobState.SUCCEEDED:
        logger.info("job %s is %s: nothing to promote", job_id, state, extra={"job_id": job_id})
        return None
    decision = record.get("promotion") or _decide(record, deps)
    if decision["decision"] == REJECT:
        moved = transition(deps, job_id, JobState.REJECTED, reason=decision["reason"])
        announce(deps, moved.record)
        logger.warning("job %s rejected: %s", job_id, decision["reason"], extra={"job_id": job_id})
        return Outcome(job_id, JobState.REJECTED, reason=decision["reason"])
    endpoint, deployed_id = _deploy(record, decision, deps)
    _crown(record, decision, endpoint, deployed_id, deps)
    moved = transition(
        deps,
        job_id,
        JobState.PROMOTED,
        fields={"endpoint": endpoint, "deployed_model_id": deployed_id},
    )
    announce(deps, moved.record)
    logger.info("job %s promoted to %s", job_id, endpoint, extra={"job_id": job_id})
    return Outcome(job_id, JobState.PROMOTED, endpoint=endpoint)


def family_of(record: Mapping[str, Any]) -> str:
    """The model family of a job: its model display name.

    Raises:
        UnknownJobError: the job record has no resolved spec naming its model.
    """
    family = (record.get("spec") or {}).get("model_display_name")
    if not family:
        raise UnknownJobError(f"job {record.get('job_id')} has no spec.model_display_name")
    return str(family)


def _metrics(record: Mapping[str, Any], deps: Dependencies) -> dict[str, float]:
    """The job's recorded metrics, else the Model Registry entry's."""
    recorded = record.get("metrics")
    if recorded:
        return {str(k): float(v) for k, v in recorded.items()}
    try:
        return dict(deps.require_endpoints().get_model(record["model"]).metrics)
    except ObjectNotFoundError:
        return {}


def _thresholds(record: Mapping[str, Any], settings: Settings) -> Thresholds:
    """The job's gates: the settings, with what its config sidecar or rerun set in their place."""
    # from_settings reads only the gate keys of the overrides.
    return Thresholds.from_settings(settings, (record.get("request") or {}).get("overrides"))


def _decide(record: dict[str, Any], deps: Dependencies) -> dict[str, Any]:
    """Gate the job, write the decision on it (first writer wins) and return what is written.

    Raises:
        UnknownJobError: the job record vanished or names no family.
        RetryableError: a backing service failed.
    """
    settings = deps.settings
    job_id = record["job_id"]
    family = family_of(record)
    model = record.get("model")
    champion_doc = deps.records.get(settings.models_collection, family) or {}
    champion = champion_doc.get("champion")
    if champion and champion.get("job_id") == job_id:
        champion = None  # Crowned already (a crash before the transition): compare with nobody.
    metrics = _metrics(record, deps) if model else {}
    thresholds = _thresholds(record, settings)
    failures = (
        gate(metrics, thresholds, champion) if model else ["the job recorded no model to promote"]
    )
    canary = champion is not None and settings.canary_percent > 0
    decision: dict[str, Any] = {
        "decision": REJECT if failures else PROMOTE,
        "family": family,
        "model": model,
        "metrics": metrics,
        "failures": failures,
        "thresholds": {name: getattr(thresholds, name) for name in PROMOTION_GATE_KEYS},
        "champion": (
            {k: champion.get(k) for k in ("job_id", "model", "metrics", "endpoint")}
            if champion
            else None
        ),
        "traffic_percent": settings.canary_percent if canary else 100,
        "decided_at": deps.clock().isoformat(),
    }
    if failures:
        decision["reason"] = "; ".join(failures)

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or current.get("promotion"):
            return None
        current["promotion"] = decision
        return current

    stored = deps.records.transact(settings.jobs_collection, job_id, mutate)
    if stored is None:
        raise UnknownJobError(f"job {job_id} vanished while it was being promoted")
    result: dict[str, Any] = stored["promotion"]
    return result


def _deploy(
    record: Mapping[str, Any], decision: Mapping[str, Any], deps: Dependencies
) -> tuple[str, str]:
    """Make sure the family's endpoint serves the job's model; ``(endpoint, deployed id)``."""
    endpoints = deps.require_endpoints()
    job_id = record["job_id"]
    model = str(decision["model"])
    family = str(decision["family"])
    endpoint = decision.get("endpoint")
    if not endpoint:
        location = location_of(model) or deps.settings.region
        found = endpoints.find_endpoint(family, location) or endpoints.create_endpoint(
            family, location
        )
        endpoint = _remember_endpoint(job_id, found.name, deps)
    info = endpoints.get_endpoint(endpoint)
    deployed_id = info.deployed_id_of(model)
    if deployed_id is not None:
        return endpoint, deployed_id  # A redelivery: deployed already.
    # The endpoint lists the model only once its deployment is done: a delivery that comes while
    # another one's deployment runs must not deploy the model a second time.
    token = uuid.uuid4().hex
    if not _claim_deployment(job_id, token, deps):
        raise RetryableError(f"the model of job {job_id} is being deployed by another delivery")
    champion = decision.get("champion") or {}
    incumbent = info.deployed_id_of(champion["model"]) if champion.get("model") else None
    try:
        deployed_id = endpoints.deploy(
            endpoint, model, int(decision.get("traffic_percent") or 100), incumbent
        )
    except (QuotaExceededError, PermanentError):
        # Refused: no deployment runs, so the next delivery may try again at once.
        _release_deployment(job_id, token, deps)
        raise
    logger.info(
        "deployed %s on %s (%s%% of the traffic)",
        model,
        endpoint,
        decision.get("traffic_percent"),
        extra={"job_id": job_id},
    )
    return endpoint, deployed_id


def _claim_deployment(job_id: str, token: str, deps: Dependencies) -> bool:
    """Claim deploying the job's model for the delivery holding ``token``; whether it has it.

    Another delivery's claim younger than :data:`DEPLOY_CLAIM_SECONDS` stands: its deployment
    may still be running, even if that delivery's process is gone.

    Raises:
        UnknownJobError: the job record vanished.
    """
    now = deps.clock()

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None:
            return None
        held = (current.get("promotion") or {}).get("deploying") or {}
        age = now - datetime.fromisoformat(held["at"]) if held else None
        if age is not None and age < timedelta(seconds=DEPLOY_CLAIM_SECONDS):
            return None
        current["promotion"]["deploying"] = {"token": token, "at": now.isoformat()}
        return current

    stored = deps.records.transact(deps.settings.jobs_collection, job_id, mutate)
    if stored is None:
        raise UnknownJobError(f"job {job_id} vanished while it was being promoted")
    return bool(((stored.get("promotion") or {}).get("deploying") or {}).get("token") == token)


def _release_deployment(job_id: str, token: str, deps: Dependencies) -> None:
    """Drop the claim ``token`` holds on deploying the job's model (no deployment runs)."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        promotion = (current or {}).get("promotion") or {}
        if current is None or (promotion.get("deploying") or {}).get("token") != token:
            return None
        del current["promotion"]["deploying"]
        return current

    deps.records.transact(deps.settings.jobs_collection, job_id, mutate)


def _remember_endpoint(job_id: str, endpoint: str, deps: Dependencies) -> str:
    """Write the endpoint on the job's decision once; the endpoint every delivery then uses."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or (current.get("promotion") or {}).get("endpoint"):
            return None
        current["promotion"]["endpoint"] = endpoint
        return current

    stored = deps.records.transact(deps.settings.jobs_collection, job_id, mutate)
    if stored is None:
        raise UnknownJobError(f"job {job_id} vanished while it was being promoted")
    return str(stored["promotion"]["endpoint"])


def _crown(
    record: Mapping[str, Any],
    decision: Mapping[str, Any],
    endpoint: str,
    deployed_id: str,
    deps: Dependencies,
) -> None:
    """Make the job's model the family's champion (once), then undeploy what no longer serves."""
    job_id = record["job_id"]
    family = str(decision["family"])
    now = deps.clock().isoformat()
    entry = {
        "job_id": job_id,
        "model": decision["model"],
        "endpoint": endpoint,
        "deployed_model_id": deployed_id,
        "metrics": dict(decision.get("metrics") or {}),
        "traffic_percent": decision.get("traffic_percent", 100),
        "promoted_at": now,
    }

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        doc = current or {"family": family, "champion": None, "history": [], "rolled_back": []}
        champion = doc.get("champion")
        if champion and champion.get("job_id") == job_id:
            return None
        if champion:
            doc["history"] = [*doc.get("history", []), champion]
        doc["champion"] = entry
        doc["updated_at"] = now
        return doc

    doc = deps.records.transact(deps.settings.models_collection, family, mutate)
    if doc is not None:
        previous = doc["history"][-1] if doc.get("history") else None
        keep = {str(decision["model"])} | ({previous["model"]} if previous else set())
        _undeploy_idle(endpoint, keep, deps)


def _undeploy_idle(endpoint: str, keep: set[str], deps: Dependencies) -> None:
    """Undeploy the models on ``endpoint`` outside ``keep`` that receive no traffic."""
    endpoints = deps.require_endpoints()
    info = endpoints.get_endpoint(endpoint)
    for deployed in info.deployed_models:
        if deployed.model in keep or info.traffic_split.get(deployed.deployed_model_id, 0):
            continue
        try:
            endpoints.undeploy(endpoint, deployed.deployed_model_id)
        except ObjectNotFoundError:
            continue  # Undeployed by a concurrent delivery.
        logger.info("undeployed %s from %s (superseded)", deployed.model, endpoint)


def rollback(family: str, deps: Dependencies, *, from_job: str | None = None) -> dict[str, Any]:
    """Restore the previous champion of ``family``: all traffic back to it, the current undeployed.

    The job whose model is taken off moves PROMOTED → ROLLED_BACK, which is announced on the status
    topic. ``from_job`` guards against rolling back twice: when given, only a champion from that
    job is rolled back, and a repeated call finishes (if a crash interrupted it) and changes
    nothing more. Returns the family's record as it now stands.

    Raises:
        NothingToRollBackError: no champion, no previous one, or ``from_job`` is not the champion.
        PermanentError: the endpoint refuses the traffic change.
        RetryableError: a backing service failed; calling again is safe.
    """
    settings = deps.settings
    doc = deps.records.get(settings.models_collection, family)
    champion = (doc or {}).get("champion")
    if doc is None or not champion:
        raise NothingToRollBackError(f"model family {family!r} has no champion")
    if from_job is not None and champion.get("job_id") != from_job:
        done = [r for r in doc.get("rolled_back", []) if r.get("job_id") == from_job]
        if done:  # Rolled back already (a repeated call): make sure the job says so.
            _mark_rolled_back(done[-1], deps)
            return doc
        raise NothingToRollBackError(
            f"the champion of {family!r} is job {champion.get('job_id')}, not {from_job}"
        )
    if not doc.get("history"):
        raise NothingToRollBackError(f"model family {family!r} has no previous champion")
    previous = doc["history"][-1]
    endpoints = deps.require_endpoints()
    endpoint = str(champion["endpoint"])
    info = endpoints.get_endpoint(endpoint)
    restored_id = info.deployed_id_of(previous["model"])
    if restored_id is None:
        restored_id = endpoints.deploy(endpoint, previous["model"], 100)
        info = endpoints.get_endpoint(endpoint)
    current_id = info.deployed_id_of(champion["model"])
    if current_id is not None:
        endpoints.undeploy(endpoint, current_id, {restored_id: 100})
    elif info.traffic_split.get(restored_id, 0) != 100:
        endpoints.set_traffic(endpoint, {restored_id: 100})
    now = deps.clock().isoformat()
    entry = {**champion, "rolled_back_at": now, "restored_job_id": previous["job_id"]}

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or (current.get("champion") or {}).get("job_id") != champion["job_id"]:
            return None
        history = list(current.get("history", []))
        restored = {**history.pop(), "deployed_model_id": restored_id, "traffic_percent": 100}
        current["rolled_back"] = [*current.get("rolled_back", []), entry]
        current["champion"] = restored
        current["history"] = history
        current["updated_at"] = now
        return current

    updated = deps.records.transact(settings.models_collection, family, mutate)
    if updated is None:  # A concurrent rollback won: report the family as it now stands.
        return deps.records.get(settings.models_collection, family) or {}
    _mark_rolled_back(entry, deps)
    logger.warning(
        "model family %s rolled back from job %s to job %s",
        family,
        champion["job_id"],
        previous["job_id"],
        extra={"job_id": champion["job_id"]},
    )
    return updated


def _mark_rolled_back(entry: Mapping[str, Any], deps: Dependencies) -> None:
    """Move the job of a rolled-back champion ``entry`` to ROLLED_BACK and announce it."""
    job_id = str(entry["job_id"])
    reason = (
        f"rolled back: the model of job {entry.get('restored_job_id')} serves "
        f"{entry.get('endpoint')} again"
    )
    try:
        moved = transition(
            deps,
            job_id,
            JobState.ROLLED_BACK,
            fields={
                "rolled_back_at": entry.get("rolled_back_at"),
                "restored_job_id": entry.get("restored_job_id"),
            },
            reason=reason,
        )
    except ObjectNotFoundError:
        logger.warning("the rolled-back job %s has no record", job_id, extra={"job_id": job_id})
        return
    announce(deps, moved.record)
