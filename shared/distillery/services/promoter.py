"""The promoter: a SUCCEEDED job's model → the serving endpoint of its family, when it earns it.

``promote_model`` listens on ``distill-job-status`` and acts on SUCCEEDED only (other states are
dropped from the message attributes, before the body is parsed). For a job it:

1. moves it SUCCEEDED → EVALUATING (announced), holding the family's lease;
2. decides once: the candidate, on the endpoint its own pipeline deployed it on, and the champion
   (``models/{family}``, family = the job's model display name), where it serves, answer the
   family's frozen golden set (:mod:`distillery.services.evaluation`); the golden-set rule of
   :mod:`distillery.evaluation` (task metric, paired-bootstrap interval, per-class drops) decides,
   with the token-accuracy gates of the settings (or the job's config sidecar or rerun:
   ``min_eval_accuracy`` and the like) as extra rules where the service reports those metrics.
   The decision and its report (``reports/decisions/<job_id>.json`` and ``.html``) are written
   on the job (``promotion``) with a compare-and-set, so a redelivery never flips it;
3. REJECTED: the candidate's own endpoint is undeployed and deleted, and the job moves
   EVALUATING → REJECTED with a ``reason`` that lists every failed rule with its figures;
4. PROMOTED: finds the family's serving endpoint (``<family>-serving``; created when there is
   none), deploys the model unless it already serves it (with the canary share of the traffic
   when a champion is serving and ``DISTILLERY_CANARY_PERCENT`` is set), makes it the champion
   (the previous one joins ``history``, for rollback; the first promoted job's golden set becomes
   the family's), undeploys older models that no longer serve, deletes the candidate's own
   endpoint, then moves the job to PROMOTED with ``endpoint`` set and announces it.

One decision at a time per family: a promotion (steps 1 to 4), a rollback and a golden set's
replacement hold the family's lease (``models/{family}.lease``, a compare-and-set), so the
family's endpoint is created once (recorded as ``models/{family}.endpoint``) and no champion
changes under a decision. Crowning is
conditional on the champion the decision was compared against; a decision whose champion was
replaced meanwhile is made again against the new one.

The deployment is a long-running operation: it is started once, its name recorded on the job
(``promotion.operation``), and awaited for ``DISTILLERY_PROMOTE_BUDGET_SECONDS`` at most. A
deployment still running then keeps the family's lease; a redelivery or reconcile
(:func:`finish_promotions`) polls the operation and finishes the promotion.

The golden-set evaluation is bounded by the same budget, measured on ``deps.clock`` from the
start of the call: the answers are recorded as they arrive (``reports/answers/<job_id>/``), and
a call whose budget runs out with prompts left records how far it got on the job
(``evaluation_progress``) and raises a retryable error; the redelivery asks only the prompts left.

A ``gemini`` job (a Vertex AI tuning job; the record's ``backend``) goes through the same stages
with the same decision and report, but its model is asked through ``:generateContent`` and is
crowned by record where it already serves: a tuned Gemini model is deployed automatically to an
endpoint of its own, where requests must go, and Google documents neither deploying it elsewhere
nor a traffic split for it (cloud.google.com/vertex-ai/generative-ai/docs/deploy/overview,
"Deploy a tuned model"). So step 4 is, for it: no serving endpoint, no deployment, no canary; the
champion entry names the model's own endpoint (``backend: gemini``) and the family's ``endpoint``
(the pipeline serving endpoint) is left alone. A rejected one's endpoint is undeployed and
deleted as in step 3; its model stays in the Model Registry, from which a tuned Gemini model
cannot be deleted, and where it costs nothing idle
(cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning, "Known issues").

A model tuned step-by-step (its job had a labeling stage) answers the label task: it is judged on
the golden set with its job's ``label_task_prefix`` before every prompt, and its champion entry
records that ``prompt_prefix`` (``""`` for every other model), as do its decision and its PROMOTED
record and event, so whoever calls the champion knows what to send (``distillery predict`` does).

Every step converges, so an event delivered again after a crash at any point finishes the work and
never deploys twice. :func:`rollback` restores a family's previous champion: the family's record
keeps what was rolled back (``rolled_back``), and the job whose model was taken off moves
PROMOTED → ROLLED_BACK, announced on the status topic like every state.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from distillery.core.errors import (
    DistilleryError,
    ObjectNotFoundError,
    PermanentError,
    QuotaExceededError,
    RequestRejectedError,
    RetryableError,
)
from distillery.core.events import CloudEventLike, parse_message, parse_pubsub_event
from distillery.core.jobs import announce, transition
from distillery.core.models import JobState, StatusEvent
from distillery.core.ports import location_of, same_model
from distillery.core.runtime import Dependencies
from distillery.core.settings import EVALUATION_GATE_KEYS, PROMOTION_GATE_KEYS, Settings
from distillery.facts import DISPLAY_NAME_MAX
from distillery.labeling._prompt import champion_prefix, label_task_prefix
from distillery.services import evaluation

if TYPE_CHECKING:
    from distillery.evaluation import EvaluationThresholds

logger = logging.getLogger(__name__)

ACCURACY = "eval_fraction_of_correct_next_step_preds"
LOSS = "eval_total_loss"
PREDICTIONS = "eval_num_predictions"

#: Float sums (champion + margin) must not reject a model that meets the margin exactly.
_TOLERANCE = 1e-9

PROMOTE = "promote"
REJECT = "reject"

#: How long one delivery's claim on deploying a job's model keeps other deliveries from deploying
#: it too while no operation is recorded (the request's answer was lost): as long as the Vertex
#: AI adapter waits for a deployment's operation.
DEPLOY_CLAIM_SECONDS = 1800

#: Once the operation is recorded, a claim stands only while its delivery may still be polling:
#: its time budget (``DISTILLERY_PROMOTE_BUDGET_SECONDS``) and this much more; after that, a
#: redelivery or reconcile polls the operation.
CLAIM_MARGIN_SECONDS = 60

#: How long a rollback, or a promotion whose deployment runs, holds its family's lease
#: (``models/{family}.lease``) unless it lets go: as long as a deployment may run. A promotion
#: whose deployment outlives its delivery keeps the lease, renewed by every delivery or reconcile
#: pass that polls the deployment. Until its deployment starts, a promotion holds the lease for
#: its budget and :data:`CLAIM_MARGIN_SECONDS` more (a killed delivery holds the family no longer).
FAMILY_LEASE_SECONDS = DEPLOY_CLAIM_SECONDS

#: What the family's serving endpoint's display name adds to the family's name.
SERVING_SUFFIX = "-serving"

#: The longest pause between two polls of a deployment's operation.
_MAX_POLL_SECONDS = 5.0

#: What a rejected gemini candidate leaves behind, and why it costs nothing
#: (cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning, "Known issues").
GEMINI_REGISTRY_NOTE = (
    "its endpoint is undeployed and deleted; the tuned model stays in the Model Registry, since "
    "Google documents that a tuned Gemini model cannot be deleted from it, and an idle tuned "
    "model incurs no inference cost"
)


class UnknownJobError(PermanentError):
    """A status event names a job that has no record."""


class NothingToRollBackError(PermanentError):
    """The family has no champion, or no previous champion to restore."""


class FamilyBusyError(RetryableError):
    """Another promotion or a rollback of the family holds its lease: try again later."""


class DeploymentInProgressError(RetryableError):
    """Another delivery is deploying the job's model and polling its operation."""


class CandidateEndpointGoneError(PermanentError):
    """A gemini candidate's own endpoint (where it would be champion) is gone or serves it no
    more: it cannot be promoted."""


class RollbackTargetGoneError(NothingToRollBackError):
    """The previous champion's own endpoint (a tuned Gemini model's) no longer serves it."""


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
        values, sources = _chosen(settings, overrides, PROMOTION_GATE_KEYS)
        return cls(**values, promote_without_eval=settings.promote_without_eval, sources=sources)

    def source(self, name: str) -> str:
        """Where gate ``name`` was set, for reasons."""
        return self.sources.get(name) or f"DISTILLERY_{name.upper()}"


def _chosen(
    settings: Settings, overrides: Mapping[str, Any] | None, keys: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values of threshold ``keys``: the job's overrides where they set one, else the
    settings'; and where each came from (for reasons)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in keys:
        given = (overrides or {}).get(name)
        if given is None or isinstance(given, bool):
            values[name] = getattr(settings, name)
            sources[name] = settings.env_name(name)
        else:
            values[name] = type(getattr(settings, name))(given)
            sources[name] = f"the job's config {name}"
    return values, sources


def evaluation_thresholds(
    settings: Settings, overrides: Mapping[str, Any] | None = None
) -> EvaluationThresholds:
    """The golden-set rule's thresholds: the settings', or the job's config where it sets them."""
    from distillery.evaluation import EvaluationThresholds

    values, sources = _chosen(settings, overrides, ("promotion_margin", *EVALUATION_GATE_KEYS))
    return EvaluationThresholds(
        min_task_score=values["min_task_score"],
        promotion_margin=values["promotion_margin"],
        promotion_tolerance=values["promotion_tolerance"],
        max_class_regression=values["max_class_regression"],
        confidence=values["promotion_confidence"],
        resamples=values["bootstrap_resamples"],
        seed=settings.bootstrap_seed,
        sources=sources,
    )


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
    """Every service-metric rule ``metrics`` fail, each with the figures compared; empty when
    all pass.

    These are the extra gates on the token accuracy and loss the service reports (SPEC "After
    the job": whether the pipeline publishes them is not documented): a gate whose metric is not
    reported is not applied, and the decision rests on the golden-set evaluation alone.
    ``champion`` is the family's ``models/{family}`` champion entry (``job_id``, ``model``,
    ``metrics``), or None when the family has none.
    """
    failures: list[str] = []
    accuracy = metrics.get(ACCURACY)
    if accuracy is None:
        return failures
    if accuracy < thresholds.min_eval_accuracy:
        failures.append(
            f"{ACCURACY} {_figure(accuracy)} is below the minimum "
            f"{_figure(thresholds.min_eval_accuracy)} ({thresholds.source('min_eval_accuracy')})"
        )
    if thresholds.max_eval_loss > 0:
        loss = metrics.get(LOSS)
        if loss is not None and loss > thresholds.max_eval_loss:
            failures.append(
                f"{LOSS} {_figure(loss)} is above the maximum "
                f"{_figure(thresholds.max_eval_loss)} ({thresholds.source('max_eval_loss')})"
            )
    if thresholds.min_eval_predictions > 0:
        predictions = metrics.get(PREDICTIONS)
        if predictions is not None and predictions < thresholds.min_eval_predictions:
            failures.append(
                f"{PREDICTIONS} {_figure(predictions)} is below the minimum "
                f"{thresholds.min_eval_predictions} ({thresholds.source('min_eval_predictions')})"
            )
    if champion:
        failures.extend(_against_champion(accuracy, thresholds, champion))
    return failures


def _against_champion(
    accuracy: float, thresholds: Thresholds, champion: Mapping[str, Any]
) -> list[str]:
    """The champion rule on token accuracy: never worse than the champion's by the margin
    (applied only when both figures are reported)."""
    theirs = (champion.get("metrics") or {}).get(ACCURACY)
    if theirs is None:
        return []
    who = f"the champion (job {champion.get('job_id')}, model {champion.get('model')})"
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


def promote(
    job_id: str,
    deps: Dependencies,
    *,
    wait_seconds: float | None = None,
    asking_seconds: float | None = None,
) -> Outcome | None:
    """Promote or reject job ``job_id`` (idempotent); None when the job is not SUCCEEDED.

    The promotion holds its family's lease (one decision at a time per family) and waits for the
    model's deployment up to ``wait_seconds`` (default ``DISTILLERY_PROMOTE_BUDGET_SECONDS``);
    it asks the golden set for at most ``asking_seconds`` (the same default; given, it is what
    is left of a reconcile pass; a redelivery or the next call goes on from the answers recorded).
    A deployment still running then is recorded on the job (``promotion.operation``): the
    outcome is SUCCEEDED, and a redelivery or :func:`finish_promotions` finishes it.

    Raises:
        UnknownJobError: there is no such job.
        FamilyBusyError: another promotion or a rollback of the family is under way.
        DeploymentInProgressError: another delivery is deploying the job's model.
        CandidateEndpointGoneError: a gemini job's own endpoint no longer serves its model.
        PermanentError: the endpoint or the model refuses the deployment.
        RetryableError: a backing service failed; calling again is safe.
    """
    budget = deps.settings.promote_budget_seconds if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + budget
    asking_for = deps.settings.promote_budget_seconds if asking_seconds is None else asking_seconds
    limit = (
        f"{deps.settings.env_name('promote_budget_seconds')}={asking_for:g}"
        if asking_seconds is None
        else f"what was left of the reconcile pass, {max(asking_for, 0.0):.0f} s"
    )
    asking = _asking_budget(job_id, asking_for, limit, deps)
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    if record is None:
        raise UnknownJobError(f"there is no job {job_id} to promote")
    state = JobState(record["state"])
    if state in (JobState.PROMOTED, JobState.REJECTED):
        announce(deps, record)  # A crash after the transition: announce it now.
        return Outcome(job_id, state, record.get("endpoint"), record.get("reason"))
    if state not in (JobState.SUCCEEDED, JobState.EVALUATING):
        logger.info("job %s is %s: nothing to promote", job_id, state, extra={"job_id": job_id})
        return None
    decided = record.get("promotion")
    if decided and decided["decision"] == REJECT:
        return _reject(job_id, decided, deps)  # A rejection stands: no need for the family.
    family = family_of(record)
    holder = _holder(job_id)
    # The lease outlasts the longest this call may work: its asking or its deployment wait.
    _take_lease(family, holder, deps, seconds=max(budget, asking_for) + CLAIM_MARGIN_SECONDS)
    try:
        return _promote_holding(job_id, family, deadline, asking, deps)
    finally:
        # A deployment that may still run keeps the family (renewed until the next poll): no
        # other decision may be made on an endpoint whose traffic is about to change.
        if _deployment_pending(job_id, deps):
            _keep_lease(family, holder, deps)
        else:
            _release_lease(family, holder, deps)


def serving_endpoint_name(family: str) -> str:
    """The display name of the family's serving endpoint: distinct from the endpoints the
    pipeline creates for each model (named after the model's display name, the family)."""
    return f"{family[: DISPLAY_NAME_MAX - len(SERVING_SUFFIX)]}{SERVING_SUFFIX}"


def _evaluating(job_id: str, deps: Dependencies) -> dict[str, Any]:
    """Move the job SUCCEEDED → EVALUATING (once) and announce it; the record as it stands.

    Raises:
        UnknownJobError: the job record vanished.
        RetryableError: a backing service failed.
    """
    try:
        moved = transition(deps, job_id, JobState.EVALUATING)
    except ObjectNotFoundError:
        raise UnknownJobError(f"job {job_id} vanished while it was being promoted") from None
    announce(deps, moved.record)
    return moved.record


def _retire_candidate(decision: Mapping[str, Any], serving: str | None, deps: Dependencies) -> None:
    """Undeploy the judged model from the endpoint its own deployment made and delete that
    endpoint (nothing left billing), unless it is the family's serving endpoint ``serving``.

    An endpoint that also serves other models only loses this one. Converges: a redelivery
    finds it gone.

    Raises:
        RetryableError: a backing service failed.
    """
    name = decision.get("candidate_endpoint")
    if not name or name == serving:
        return
    endpoints = deps.require_endpoints()
    try:
        info = endpoints.get_endpoint(str(name))
    except ObjectNotFoundError:
        return
    model = str(decision.get("model") or "")
    ours = [d for d in info.deployed_models if same_model(d.model, model)]
    others = [d for d in info.deployed_models if not same_model(d.model, model)]
    for deployed in ours:
        split = (
            _renormalized(info.traffic_split, {d.deployed_model_id for d in others})
            if others
            else None
        )
        with contextlib.suppress(ObjectNotFoundError):
            endpoints.undeploy(str(name), deployed.deployed_model_id, split)
    if others:
        logger.info("undeployed %s from %s (other models stay)", model, name)
        return
    with contextlib.suppress(ObjectNotFoundError):
        endpoints.delete_endpoint(str(name))
    logger.info("deleted endpoint %s of the judged model %s", name, model)


def _renormalized(split: Mapping[str, int], keep: set[str]) -> dict[str, int]:
    """``split`` over the deployed models ``keep`` only, summing to 100."""
    kept = {k: v for k, v in split.items() if k in keep and v > 0}
    if not kept:
        first = sorted(keep)[0]
        return {first: 100}
    total = sum(kept.values())
    shares = {k: v * 100 // total for k, v in kept.items()}
    top = max(shares, key=lambda k: (shares[k], k))
    shares[top] += 100 - sum(shares.values())
    return shares


def _holder(job_id: str) -> str:
    """The holder of the family's lease while job ``job_id`` is being promoted."""
    return f"promotion of job {job_id}"


def _keep_lease(family: str, holder: str, deps: Dependencies) -> None:
    """Renew ``holder``'s lease for :data:`FAMILY_LEASE_SECONDS` while its deployment runs."""
    try:
        _take_lease(family, holder, deps, seconds=FAMILY_LEASE_SECONDS)
    except FamilyBusyError as exc:
        # It ran out and another took it: crowning stays conditional on the champion compared.
        logger.warning("the lease of %s was lost: %s", holder, exc)


def _asking_budget(
    job_id: str, seconds: float, limit: str, deps: Dependencies
) -> evaluation.Budget:
    """How long this call may ask the golden set: ``seconds`` from now, on ``deps.clock`` (the
    function's one budget, ``DISTILLERY_PROMOTE_BUDGET_SECONDS``, or what is left of reconcile's
    pass, as ``limit`` says); what it does not ask, a redelivery or the next pass asks from what
    was recorded."""
    deadline = deps.clock() + timedelta(seconds=max(seconds, 0.0))
    return evaluation.Budget(job_id, deadline, limit)


def _promote_holding(
    job_id: str, family: str, deadline: float, asking: evaluation.Budget, deps: Dependencies
) -> Outcome | None:
    """:func:`promote`'s work once the family's lease is held; the golden set is asked within
    ``asking``."""
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    if record is None:
        raise UnknownJobError(f"job {job_id} vanished while it was being promoted")
    state = JobState(record["state"])
    if state not in (JobState.SUCCEEDED, JobState.EVALUATING):  # Another delivery finished it.
        announce(deps, record)
        return Outcome(job_id, state, record.get("endpoint"), record.get("reason"))
    record = _evaluating(job_id, deps)
    champion = _champion(family, deps)
    decision = record.get("promotion")
    if decision is None:
        decision = _decide(record, deps, asking)
    elif _stale(decision, champion, job_id):
        if decision.get("operation") and decision.get("endpoint"):
            # Its deployment must be done before a new decision may take the model off.
            endpoint = str(decision["endpoint"])
            if _deploy(record, decision, endpoint, deadline, deps) is None:
                return _pending(job_id, decision, endpoint, deps)
        decision = _decide_again(record, decision, champion, deps, asking)
    if decision["decision"] == REJECT:
        return _reject(job_id, decision, deps)
    if evaluation.backend_of(record) == evaluation.GEMINI:
        try:
            return _promote_gemini(record, decision, deps)
        except CandidateEndpointGoneError as exc:
            if (champion or {}).get("job_id") == job_id:
                raise  # Crowned already: its champion entry must be dealt with by hand.
            # The decision cannot be carried out: the job is rejected with the reason, rather
            # than left EVALUATING for every later pass to fail on again.
            revoked = _revoke(job_id, decision, str(exc), deps)
            if revoked["decision"] != REJECT:
                raise  # Decided again meanwhile: the next delivery carries that decision out.
            return _reject(job_id, revoked, deps)
    endpoint = decision.get("endpoint") or _remember_endpoint(
        job_id, _family_endpoint(family, str(decision["model"]), deps), deps
    )
    deployed_id = _deploy(record, decision, endpoint, deadline, deps)
    if deployed_id is None:
        return _pending(job_id, decision, endpoint, deps)
    _crown(record, decision, endpoint, deployed_id, deps)
    _retire_candidate(decision, endpoint, deps)
    moved = transition(
        deps,
        job_id,
        JobState.PROMOTED,
        fields={
            "endpoint": endpoint,
            "deployed_model_id": deployed_id,
            "prompt_prefix": prompt_prefix_of(record, decision),
        },
    )
    announce(deps, moved.record)
    logger.info("job %s promoted to %s", job_id, endpoint, extra={"job_id": job_id})
    return Outcome(job_id, JobState.PROMOTED, endpoint=endpoint)


def _revoke(
    job_id: str, decision: Mapping[str, Any], reason: str, deps: Dependencies
) -> dict[str, Any]:
    """Turn the recorded decision ``decision`` into a rejection for ``reason`` (once: a
    decision made again meanwhile is left as it is); the decision as it is then recorded.

    Raises:
        UnknownJobError: the job record vanished.
        RetryableError: a backing service failed.
    """
    revoked = {
        **decision,
        "decision": REJECT,
        "failures": [*decision.get("failures", []), reason],
        "reason": reason,
    }

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        promotion = (current or {}).get("promotion") or {}
        if current is None or promotion.get("decided_at") != decision.get("decided_at"):
            return None
        if promotion.get("decision") == REJECT:
            return None
        current["promotion"] = revoked
        return current

    deps.records.transact(deps.settings.jobs_collection, job_id, mutate)
    stored = deps.records.get(deps.settings.jobs_collection, job_id)
    if stored is None:
        raise UnknownJobError(f"job {job_id} vanished while it was being promoted")
    result: dict[str, Any] = stored.get("promotion") or revoked
    return result


def _promote_gemini(
    record: Mapping[str, Any], decision: Mapping[str, Any], deps: Dependencies
) -> Outcome:
    """Crown a tuned Gemini model where it already serves, then move the job to PROMOTED.

    Google documents that a tuned Gemini model is uploaded to the Model Registry and deployed
    automatically to an endpoint of its own, to which requests must go
    (cloud.google.com/vertex-ai/generative-ai/docs/deploy/overview, "Deploy a tuned model"), and
    documents neither deploying it onto another endpoint nor a traffic split for it. So the
    champion changes by record: no serving endpoint, no deployment, no canary; the champion entry
    names the model's own endpoint (``backend: gemini``). The family's ``endpoint`` (its pipeline
    serving endpoint) is left alone, and so is the previous champion's endpoint (the rollback
    target: an idle tuned model costs nothing). Every step converges on redelivery.

    Raises:
        CandidateEndpointGoneError: the model's own endpoint is gone or no longer serves it.
        FamilyBusyError: the champion changed since the decision (the job is decided again).
        RetryableError: a backing service failed.
    """
    job_id = str(record["job_id"])
    model = str(decision["model"])
    own = decision.get("endpoint") or decision.get("candidate_endpoint")
    if not own:
        raise CandidateEndpointGoneError(
            f"job {job_id}'s decision names no endpoint of its tuned model {model}"
        )
    endpoint = str(own)
    try:
        info = deps.require_endpoints().get_endpoint(endpoint)
    except ObjectNotFoundError:
        raise CandidateEndpointGoneError(
            f"the endpoint {endpoint} of job {job_id}'s tuned model {model} is gone: it cannot "
            "be promoted"
        ) from None
    deployed_id = info.deployed_id_of(model)
    if deployed_id is None:
        raise CandidateEndpointGoneError(
            f"the endpoint {endpoint} no longer serves job {job_id}'s tuned model {model}: it "
            "cannot be promoted"
        )
    endpoint = _remember_endpoint(job_id, endpoint, deps)
    _crown(record, decision, endpoint, deployed_id, deps)
    moved = transition(
        deps,
        job_id,
        JobState.PROMOTED,
        fields={
            "endpoint": endpoint,
            "deployed_model_id": deployed_id,
            "prompt_prefix": prompt_prefix_of(record, decision),
        },
    )
    announce(deps, moved.record)
    logger.info(
        "job %s promoted: its tuned model is the champion on its own endpoint %s",
        job_id,
        endpoint,
        extra={"job_id": job_id},
    )
    return Outcome(job_id, JobState.PROMOTED, endpoint=endpoint)


def _pending(
    job_id: str, decision: Mapping[str, Any], endpoint: str, deps: Dependencies
) -> Outcome:
    """The outcome of a delivery whose time budget ran out while the deployment runs."""
    operation = _job_promotion(job_id, deps).get("operation")
    reason = (
        f"deploying {decision['model']} on {endpoint} (operation {operation}); "
        "a redelivery or reconcile finishes the promotion"
    )
    logger.info("job %s: %s", job_id, reason, extra={"job_id": job_id})
    return Outcome(job_id, JobState.EVALUATING, endpoint=endpoint, reason=reason)


def _reject(job_id: str, decision: Mapping[str, Any], deps: Dependencies) -> Outcome:
    """Take the rejected model's own endpoint down (nothing left billing), then move the job to
    REJECTED with the decision's reason, and announce it."""
    _evaluating(job_id, deps)
    _retire_candidate(decision, None, deps)
    moved = transition(deps, job_id, JobState.REJECTED, reason=decision["reason"])
    announce(deps, moved.record)
    logger.warning("job %s rejected: %s", job_id, decision["reason"], extra={"job_id": job_id})
    if decision.get("backend") == evaluation.GEMINI:
        logger.info("job %s's tuned model: %s", job_id, GEMINI_REGISTRY_NOTE)
    return Outcome(job_id, JobState.REJECTED, reason=decision["reason"])


@dataclass
class FinishedPromotions:
    """What :func:`finish_promotions` did."""

    moved: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    #: False: the budget ran out before every waiting job was reached.
    complete: bool = True


def finish_promotions(
    deps: Dependencies,
    budget_seconds: float | None = None,
    *,
    monotonic: Callable[[], float] = time.monotonic,
) -> FinishedPromotions:
    """Finish the promotions a promote_model call left half-done (for ``reconcile``), within
    ``budget_seconds`` (default ``DISTILLERY_PROMOTE_BUDGET_SECONDS``): each job asks the
    golden set for at most what is left of it, and the jobs it does not reach wait for the next
    pass (``complete`` is False then).

    Every SUCCEEDED job (but those whose deployment was refused or failed) is promoted again,
    polling its recorded deployment once rather than waiting for it: a deployment that outlived
    its delivery, a crash between two steps, or an event given up on while another promotion of
    the family held it. A job another delivery or a rollback is busy with is left to them;
    another failure is reported in ``errors`` and tried again on the next pass.
    """
    finished = FinishedPromotions()
    waiting = [
        record
        for state in (JobState.SUCCEEDED, JobState.EVALUATING)
        for record in deps.records.list(deps.settings.jobs_collection, where={"state": state.value})
        if not (record.get("promotion") or {}).get("deploy_error")
    ]
    budget = deps.settings.promote_budget_seconds if budget_seconds is None else budget_seconds
    deadline = monotonic() + budget
    for record in waiting:
        job_id = str(record["job_id"])
        left = deadline - monotonic()
        if left <= 0:
            finished.complete = False
            break
        try:
            outcome = promote(job_id, deps, wait_seconds=0, asking_seconds=left)
        except (FamilyBusyError, DeploymentInProgressError) as exc:
            logger.info("reconcile leaves job %s: %s", job_id, exc, extra={"job_id": job_id})
            continue
        except DistilleryError as exc:  # one job's failure must not stop the pass
            logger.warning("reconcile could not promote job %s: %s", job_id, exc)
            finished.errors[job_id] = str(exc)
            continue
        if outcome is not None and outcome.state not in (JobState.SUCCEEDED, JobState.EVALUATING):
            finished.moved.append(job_id)
    return finished


def family_of(record: Mapping[str, Any]) -> str:
    """The model family of a job: its model display name (a gemini job's tuned model's).

    Raises:
        UnknownJobError: the job record has no resolved spec naming its model.
    """
    family = evaluation.display_name_of(record)
    if not family:
        raise UnknownJobError(
            f"job {record.get('job_id')} has no spec.model_display_name (or, for a gemini job, "
            "spec.tuned_model_display_name)"
        )
    return family


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


def _judge(
    record: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    deps: Dependencies,
    asking: evaluation.Budget | None = None,
) -> dict[str, Any]:
    """The decision on the job's model against ``champion`` (the family's, or None).

    The candidate (on the endpoint the job's own deployment made) and the champion (where it
    serves) answer the family's golden set; the golden-set rule decides, with the service's
    token-accuracy gates as extra rules where it reports them. The decision report is written
    before the decision is returned. Within ``asking``, the answers are journaled as they
    arrive and a call whose budget runs out raises, to go on where it stopped on redelivery.

    Raises:
        EvaluationBudgetSpentError: ``asking`` ran out with golden-set prompts left.
        RetryableError: a backing service failed (the evaluation goes on from its journals).
    """
    settings = deps.settings
    job_id = record["job_id"]
    family = family_of(record)
    model = record.get("model")
    if champion and champion.get("job_id") == job_id:
        champion = None  # Crowned already (a crash before the transition): compare with nobody.
    metrics = _metrics(record, deps) if model else {}
    overrides = (record.get("request") or {}).get("overrides")
    thresholds = Thresholds.from_settings(settings, overrides)
    rule = evaluation_thresholds(settings, overrides)
    backend = evaluation.backend_of(record)
    notes: list[str] = []
    # A canary shares one endpoint's traffic between the champion and the candidate: only a
    # pipeline candidate over a pipeline champion share one (the family's serving endpoint).
    shares_endpoint = backend == evaluation.PIPELINE and (
        champion is None or evaluation.backend_of(champion) == evaluation.PIPELINE
    )
    canary = champion is not None and settings.canary_percent > 0 and shares_endpoint
    if champion is not None and settings.canary_percent > 0 and not canary:
        notes.append(_no_canary_note(backend, settings))
    decision: dict[str, Any] = {
        "family": family,
        "backend": backend,
        "model": model,
        # How the model is asked (evaluation, serving): a step-by-step model learned the label
        # task, "<prefix><prompt>" → label; "" for every other model.
        "prompt_prefix": label_task_prefix(record),
        "metrics": metrics,
        "thresholds": {
            **{name: getattr(thresholds, name) for name in PROMOTION_GATE_KEYS},
            **{name: _rule_value(rule, name) for name in EVALUATION_GATE_KEYS},
        },
        "champion": (
            {
                **{k: champion.get(k) for k in ("job_id", "model", "metrics", "endpoint")},
                "prompt_prefix": champion_prefix(champion),
            }
            if champion
            else None
        ),
        "traffic_percent": settings.canary_percent if canary else 100,
        "decided_at": deps.clock().isoformat(),
    }
    failures: list[str] = []
    evaluated: evaluation.Evaluated | None = None
    if not model:
        failures.append("the job recorded no model to promote")
    else:
        evaluated = evaluation.evaluate(record, family, champion, rule, deps, budget=asking)
        failures.extend(evaluated.failures)
        decision["evaluation"] = dict(evaluated.summary)
        if evaluated.candidate_endpoint:
            decision["candidate_endpoint"] = evaluated.candidate_endpoint
        elif backend == evaluation.GEMINI and record.get("candidate_endpoint"):
            # It serves nothing the evaluation could ask, but it is the tuning job's own
            # endpoint: a rejection still deletes it (nothing left billing).
            own = str(record["candidate_endpoint"])
            if own != (champion or {}).get("endpoint"):
                decision["candidate_endpoint"] = own
        failures.extend(gate(metrics, thresholds, champion))
    decision["decision"] = REJECT if failures else PROMOTE
    decision["failures"] = failures
    if failures:
        decision["reason"] = "; ".join(failures)
        if backend == evaluation.GEMINI:
            notes.append(GEMINI_REGISTRY_NOTE)
    if notes:
        decision["notes"] = notes
    if evaluated is not None and evaluated.report is not None:
        sources = {**thresholds.sources, **rule.sources}
        report = {
            **evaluated.report,
            "decided_at": decision["decided_at"],
            "decision": decision["decision"],
            "reasons": failures,
            "notes": notes,
            "thresholds": {
                name: {"value": value, "source": sources.get(name, settings.env_name(name))}
                for name, value in decision["thresholds"].items()
            },
        }
        decision["report"] = evaluation.write_report(report, settings.bucket, deps)
    return decision


def _no_canary_note(backend: str, settings: Settings) -> str:
    """Why ``DISTILLERY_CANARY_PERCENT`` is not applied to a decision of ``backend``."""
    variable = settings.env_name("canary_percent")
    if backend == evaluation.GEMINI:
        return (
            f"{variable}={settings.canary_percent} does not apply to the gemini backend: a tuned "
            "Gemini model serves on an endpoint of its own and Google documents no traffic split "
            "for it, so the champion changes by record with all of that endpoint's traffic"
        )
    return (
        f"{variable}={settings.canary_percent} does not apply: the champion is a tuned Gemini "
        "model on an endpoint of its own, which shares no traffic with the family's serving "
        "endpoint"
    )


def _rule_value(rule: EvaluationThresholds, name: str) -> Any:
    attribute = {"promotion_confidence": "confidence", "bootstrap_resamples": "resamples"}
    return getattr(rule, attribute.get(name, name))


def _champion(family: str, deps: Dependencies) -> dict[str, Any] | None:
    """The family's champion entry (``models/{family}.champion``), or None."""
    doc = deps.records.get(deps.settings.models_collection, family) or {}
    champion: dict[str, Any] | None = doc.get("champion")
    return champion


def _decide(
    record: dict[str, Any], deps: Dependencies, asking: evaluation.Budget | None = None
) -> dict[str, Any]:
    """Gate the job, write the decision on it (first writer wins) and return what is written.

    Raises:
        UnknownJobError: the job record vanished or names no family.
        EvaluationBudgetSpentError: ``asking`` ran out with golden-set prompts left.
        RetryableError: a backing service failed.
    """
    job_id = record["job_id"]
    decision = _judge(record, _champion(family_of(record), deps), deps, asking)

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or current.get("promotion"):
            return None
        current["promotion"] = decision
        return current

    stored = deps.records.transact(deps.settings.jobs_collection, job_id, mutate)
    if stored is None:
        raise UnknownJobError(f"job {job_id} vanished while it was being promoted")
    result: dict[str, Any] = stored["promotion"]
    return result


def _stale(decision: Mapping[str, Any], champion: Mapping[str, Any] | None, job_id: str) -> bool:
    """Whether a decision to promote was compared against another champion than the current."""
    if decision.get("decision") != PROMOTE:
        return False
    current = (champion or {}).get("job_id")
    if current == job_id:
        return False  # Crowned already: only the transition is left.
    return current != (decision.get("champion") or {}).get("job_id")


def _decide_again(
    record: dict[str, Any],
    old: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    deps: Dependencies,
    asking: evaluation.Budget | None = None,
) -> dict[str, Any]:
    """Decide again against the family's current ``champion`` (it changed since ``old``).

    The new decision replaces ``old`` on the job only if ``old`` still stands (compare-and-set);
    the endpoint and the deployment already under way are kept. A model deployed already that is
    now rejected is taken off the endpoint.

    Raises:
        UnknownJobError: the job record vanished.
        RetryableError: a backing service failed.
    """
    job_id = record["job_id"]
    decision = _judge(record, champion, deps, asking)
    decision["decided_again"] = {
        "champion_was": (old.get("champion") or {}).get("job_id"),
        "decided_at": old.get("decided_at"),
    }
    logger.warning(
        "job %s was decided against champion %s, the champion is now %s: deciding again",
        job_id,
        (old.get("champion") or {}).get("job_id"),
        (champion or {}).get("job_id"),
        extra={"job_id": job_id},
    )

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        promotion = (current or {}).get("promotion") or {}
        if current is None or promotion.get("decided_at") != old.get("decided_at"):
            return None
        kept = {k: promotion[k] for k in ("endpoint", "operation", "deploying") if k in promotion}
        current["promotion"] = {**decision, **kept}
        return current

    stored = deps.records.transact(deps.settings.jobs_collection, job_id, mutate)
    if stored is None:
        raise UnknownJobError(f"job {job_id} vanished while it was being promoted")
    result: dict[str, Any] = stored["promotion"]
    if result["decision"] == REJECT and result.get("endpoint"):
        _take_off(str(result["endpoint"]), str(result["model"]), champion, deps)
    return result


def _take_off(
    endpoint: str, model: str, champion: Mapping[str, Any] | None, deps: Dependencies
) -> None:
    """Undeploy ``model`` (deployed for a decision that no longer stands) from ``endpoint``.

    Raises:
        RetryableError: its deployment still runs, or a backing service failed.
    """
    endpoints = deps.require_endpoints()
    info = endpoints.get_endpoint(endpoint)
    deployed_id = info.deployed_id_of(model)
    if deployed_id is None:
        return
    keep = info.deployed_id_of(str(champion["model"])) if champion else None
    split = {keep: 100} if keep else None
    endpoints.undeploy(endpoint, deployed_id, split)
    logger.warning("undeployed %s from %s: its promotion was decided again", model, endpoint)


def _job_promotion(job_id: str, deps: Dependencies) -> dict[str, Any]:
    """The job's ``promotion`` as it now stands ({} when it has none)."""
    record = deps.records.get(deps.settings.jobs_collection, job_id) or {}
    promotion: dict[str, Any] = record.get("promotion") or {}
    return promotion


def _deployment_pending(job_id: str, deps: Dependencies) -> bool:
    """Whether the job is SUCCEEDED with a deployment that may be running."""
    record = deps.records.get(deps.settings.jobs_collection, job_id) or {}
    promotion = record.get("promotion") or {}
    return record.get("state") in (JobState.SUCCEEDED.value, JobState.EVALUATING.value) and bool(
        promotion.get("operation") or promotion.get("deploying")
    )


def _new_family(family: str) -> dict[str, Any]:
    return {"family": family, "champion": None, "history": [], "rolled_back": []}


def _take_lease(
    family: str,
    holder: str,
    deps: Dependencies,
    *,
    seconds: float = FAMILY_LEASE_SECONDS,
    create: bool = True,
) -> None:
    """Hold the family's lease (``models/{family}.lease``) for ``holder`` ``seconds`` long, or
    renew it.

    ``create``: create the family's record when there is none (a first promotion).

    Raises:
        FamilyBusyError: another holder's lease stands.
        NothingToRollBackError: there is no record of the family and ``create`` is off.
    """
    now = deps.clock()
    until = now + timedelta(seconds=seconds)

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None and not create:
            return None
        doc = current or _new_family(family)
        held = doc.get("lease") or {}
        if held and held.get("holder") != holder and datetime.fromisoformat(held["until"]) > now:
            return None
        doc["lease"] = {"holder": holder, "until": until.isoformat()}
        return doc

    stored = deps.records.transact(deps.settings.models_collection, family, mutate)
    if stored is None:
        raise NothingToRollBackError(f"model family {family!r} has no champion")
    held = stored.get("lease") or {}
    if held.get("holder") != holder:
        raise FamilyBusyError(
            f"model family {family!r} is busy: the {held.get('holder')} holds it "
            f"(until {held.get('until')} at the latest); try again later"
        )


def _release_lease(family: str, holder: str, deps: Dependencies) -> None:
    """Let go of the family's lease if ``holder`` holds it."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or (current.get("lease") or {}).get("holder") != holder:
            return None
        del current["lease"]
        return current

    deps.records.transact(deps.settings.models_collection, family, mutate)


def _family_endpoint(family: str, model: str, deps: Dependencies) -> str:
    """The family's endpoint: the one its record names, else found or created, then recorded.

    Called with the family's lease held, so two first promotions never both create one; an
    endpoint created by a delivery that crashed before recording it is found by its name.
    """
    settings = deps.settings
    doc = deps.records.get(settings.models_collection, family) or {}
    # A gemini champion's endpoint is its own tuned model's: never deploy another model there.
    recorded = evaluation.pipeline_serving(doc)
    if recorded:
        return str(recorded)
    endpoints = deps.require_endpoints()
    location = location_of(model) or settings.region
    name = serving_endpoint_name(family)
    found = endpoints.find_endpoint(name, location) or endpoints.create_endpoint(name, location)

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        doc = current or _new_family(family)
        if doc.get("endpoint"):
            return None
        doc["endpoint"] = found.name
        return doc

    stored = deps.records.transact(settings.models_collection, family, mutate)
    return str((stored or {}).get("endpoint") or found.name)


def _deploy(
    record: Mapping[str, Any],
    decision: Mapping[str, Any],
    endpoint: str,
    deadline: float,
    deps: Dependencies,
) -> str | None:
    """Make sure ``endpoint`` serves the job's model: its deployed id, or None while deploying.

    The deployment is started once (its operation recorded on the job) and polled until
    ``deadline`` (``time.monotonic()``).

    Raises:
        DeploymentInProgressError: another delivery is deploying the model.
        RequestRejectedError: the deployment's operation failed.
        PermanentError: the endpoint or the model refuses the deployment.
        RetryableError: a backing service failed.
    """
    endpoints = deps.require_endpoints()
    job_id = record["job_id"]
    model = str(decision["model"])
    info = endpoints.get_endpoint(endpoint)
    deployed_id = info.deployed_id_of(model)
    if deployed_id is not None:
        return deployed_id  # A redelivery: deployed already.
    # The endpoint lists the model only once its deployment is done: a delivery that comes while
    # another one's deployment runs must not deploy the model a second time.
    token = uuid.uuid4().hex
    promotion = _claim_deployment(job_id, token, deps)
    if promotion is None:
        raise DeploymentInProgressError(
            f"the model of job {job_id} is being deployed by another delivery"
        )
    operation = promotion.get("operation")
    if not operation:
        champion = decision.get("champion") or {}
        incumbent = info.deployed_id_of(champion["model"]) if champion.get("model") else None
        try:
            operation = endpoints.start_deploy(
                endpoint, model, int(decision.get("traffic_percent") or 100), incumbent
            )
        except QuotaExceededError:
            # Refused for now: no deployment runs, so the next delivery may try again at once.
            _release_deployment(job_id, token, deps)
            raise
        except PermanentError as exc:
            # Refused: reconcile leaves the job (deploy_error); a redelivery may try again.
            _release_deployment(job_id, token, deps)
            _note_deploy_error(job_id, str(exc), deps)
            raise
        _record_operation(job_id, str(operation), deps)
        # The deployment may outlive this delivery: the family stays held until it is finished.
        _keep_lease(str(decision["family"]), _holder(job_id), deps)
        logger.info(
            "deploying %s on %s (%s%% of the traffic): operation %s",
            model,
            endpoint,
            decision.get("traffic_percent"),
            operation,
            extra={"job_id": job_id},
        )
    deployed_id = _await_deployment(job_id, token, str(operation), deadline, deps)
    if deployed_id is not None and endpoints.get_endpoint(endpoint).deployed_id_of(model) is None:
        # Done long ago, and undeployed since (a decision made again meanwhile): deploy again.
        _forget_operation(job_id, str(operation), None, deps)
        raise RetryableError(
            f"the model of job {job_id} was undeployed from {endpoint} after its deployment "
            "finished: it is deployed again on the next delivery"
        )
    return deployed_id


def _await_deployment(
    job_id: str, token: str, operation: str, deadline: float, deps: Dependencies
) -> str | None:
    """Poll the deployment ``operation`` until it is done or ``deadline`` passes.

    Returns the deployed model id, or None (the claim let go) when the deadline came first.

    Raises:
        RequestRejectedError: the operation failed (recorded on the job as ``deploy_error``).
        RetryableError: a backing service failed.
    """
    endpoints = deps.require_endpoints()
    pause = 0.05
    while True:
        state = endpoints.deploy_operation(operation)
        if state.done:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            _release_deployment(job_id, token, deps)
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, _MAX_POLL_SECONDS)
    if state.error or not state.deployed_model_id:
        error = state.error or "it answered no deployed model"
        _forget_operation(job_id, operation, error, deps)
        raise RequestRejectedError(f"the deployment of job {job_id}'s model failed: {error}")
    _release_deployment(job_id, token, deps)
    return state.deployed_model_id


def _claim_deployment(job_id: str, token: str, deps: Dependencies) -> dict[str, Any] | None:
    """Claim deploying the job's model for the delivery holding ``token``.

    Returns the job's ``promotion`` as claimed, or None when another delivery's claim stands: for
    :data:`DEPLOY_CLAIM_SECONDS` while no operation is recorded (its deployment may be running
    even if that delivery's process is gone), else while that delivery may still be polling.

    Raises:
        UnknownJobError: the job record vanished.
    """
    now = deps.clock()
    polling = timedelta(seconds=deps.settings.promote_budget_seconds + CLAIM_MARGIN_SECONDS)

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None:
            return None
        promotion = current.get("promotion") or {}
        held = promotion.get("deploying") or {}
        age = now - datetime.fromisoformat(held["at"]) if held else None
        limit = polling if promotion.get("operation") else timedelta(seconds=DEPLOY_CLAIM_SECONDS)
        if age is not None and age < limit:
            return None
        current["promotion"]["deploying"] = {"token": token, "at": now.isoformat()}
        return current

    stored = deps.records.transact(deps.settings.jobs_collection, job_id, mutate)
    if stored is None:
        raise UnknownJobError(f"job {job_id} vanished while it was being promoted")
    promotion: dict[str, Any] = stored.get("promotion") or {}
    return promotion if (promotion.get("deploying") or {}).get("token") == token else None


def _release_deployment(job_id: str, token: str, deps: Dependencies) -> None:
    """Drop the claim ``token`` holds on deploying the job's model (nobody polls it now)."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        promotion = (current or {}).get("promotion") or {}
        if current is None or (promotion.get("deploying") or {}).get("token") != token:
            return None
        del current["promotion"]["deploying"]
        return current

    deps.records.transact(deps.settings.jobs_collection, job_id, mutate)


def _record_operation(job_id: str, operation: str, deps: Dependencies) -> None:
    """Write the deployment's operation name on the job, for the deliveries that finish it."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None:
            return None
        current["promotion"]["operation"] = operation
        current["promotion"].pop("deploy_error", None)
        return current

    deps.records.transact(deps.settings.jobs_collection, job_id, mutate)


def _note_deploy_error(job_id: str, error: str, deps: Dependencies) -> None:
    """Write why the deployment was refused on the job (``promotion.deploy_error``)."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or not current.get("promotion"):
            return None
        current["promotion"]["deploy_error"] = {"error": error}
        return current

    deps.records.transact(deps.settings.jobs_collection, job_id, mutate)


def _forget_operation(job_id: str, operation: str, error: str | None, deps: Dependencies) -> None:
    """Drop a deployment's operation and claim; ``deploy_error`` says why it failed, if given."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        promotion = (current or {}).get("promotion") or {}
        if current is None or promotion.get("operation") != operation:
            return None
        for key in ("operation", "deploying"):
            promotion.pop(key, None)
        if error is not None:
            promotion["deploy_error"] = {"operation": operation, "error": error}
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


def prompt_prefix_of(record: Mapping[str, Any], decision: Mapping[str, Any]) -> str:
    """What is put before a prompt to ask job ``record``'s model (the label task prefix of a
    step-by-step model, else ""): as its decision recorded it, else as its record says
    (decisions from before the prefix was recorded)."""
    recorded = decision.get("prompt_prefix")
    return recorded if isinstance(recorded, str) else label_task_prefix(record)


def _crown(
    record: Mapping[str, Any],
    decision: Mapping[str, Any],
    endpoint: str,
    deployed_id: str,
    deps: Dependencies,
) -> None:
    """Make the job's model the family's champion (once), then undeploy what no longer serves.

    Raises:
        FamilyBusyError: the champion changed since the decision (the job is decided again).
        RetryableError: a backing service failed.
    """
    job_id = record["job_id"]
    family = str(decision["family"])
    now = deps.clock().isoformat()
    backend = evaluation.backend_of(record)
    entry = {
        "job_id": job_id,
        "backend": backend,
        "model": decision["model"],
        "endpoint": endpoint,
        "deployed_model_id": deployed_id,
        # Callers put it before every prompt (distillery predict does): a step-by-step model
        # answers the label task. A rollback restores an entry with its own.
        "prompt_prefix": prompt_prefix_of(record, decision),
        "metrics": dict(decision.get("metrics") or {}),
        "golden_metrics": dict((decision.get("evaluation") or {}).get("candidate") or {}),
        # A tuned Gemini model has all of its own endpoint's traffic: no canary splits it.
        "traffic_percent": (
            100 if backend == evaluation.GEMINI else decision.get("traffic_percent", 100)
        ),
        "promoted_at": now,
    }

    # Conditional on the champion the decision was compared against: if another one was crowned
    # meanwhile, the job is decided again (on the next delivery) rather than crowned over it.
    compared = (decision.get("champion") or {}).get("job_id")

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        doc = current or _new_family(family)
        champion = doc.get("champion")
        if champion and champion.get("job_id") == job_id:
            return None
        if (champion or {}).get("job_id") != compared:
            return None
        if champion:
            doc["history"] = [*doc.get("history", []), champion]
        doc["champion"] = entry
        doc["updated_at"] = now
        golden = (decision.get("evaluation") or {}).get("golden")
        if golden and not doc.get("golden"):
            # The first promoted job's golden set becomes the family's, frozen.
            doc["golden"] = golden
        return doc

    doc = deps.records.transact(deps.settings.models_collection, family, mutate)
    crowned = ((doc or {}).get("champion") or {}).get("job_id")
    if crowned != job_id:
        raise FamilyBusyError(
            f"the champion of {family!r} is now job {crowned}, not job {compared} that job "
            f"{job_id} was compared against: it is decided again on the next delivery"
        )
    if doc is not None and backend == evaluation.PIPELINE:
        # A gemini model's endpoint is its own: nothing else there to undeploy.
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

    A previous ``gemini`` champion becomes champion again by record, on its own endpoint (which
    must still serve it), with no traffic change on any endpoint; a current ``gemini`` champion
    keeps its endpoint (idle, it costs nothing). A previous ``pipeline`` champion gets all the
    traffic of the family's serving endpoint back, as always.

    The job whose model is taken off moves PROMOTED → ROLLED_BACK, which is announced on the status
    topic. ``from_job`` guards against rolling back twice: when given, only a champion from that
    job is rolled back, and a repeated call finishes (if a crash interrupted it) and changes
    nothing more. Returns the family's record as it now stands.

    Raises:
        NothingToRollBackError: no champion, no previous one, or ``from_job`` is not the champion.
        RollbackTargetGoneError: the previous champion is a tuned Gemini model whose endpoint no
            longer serves it.
        FamilyBusyError: a promotion or another rollback of the family is under way.
        PermanentError: the endpoint refuses the traffic change.
        RetryableError: a backing service failed; calling again is safe.
    """
    if deps.records.get(deps.settings.models_collection, family) is None:
        raise NothingToRollBackError(f"model family {family!r} has no champion")
    # The family's lease: a promotion of the family never runs between what this reads of the
    # family and what it changes on the endpoint and the record.
    holder = f"rollback {uuid.uuid4().hex[:12]}"
    _take_lease(family, holder, deps, create=False)
    try:
        doc = _rollback_holding(family, deps, from_job)
    finally:
        _release_lease(family, holder, deps)
    return {k: v for k, v in doc.items() if k != "lease"}


def _rollback_holding(family: str, deps: Dependencies, from_job: str | None) -> dict[str, Any]:
    """:func:`rollback`'s work once the family's lease is held."""
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
    if evaluation.backend_of(previous) == evaluation.GEMINI:
        endpoint, restored_id = _restorable_gemini(family, previous, deps)
        if evaluation.backend_of(champion) == evaluation.PIPELINE:
            # Once the gemini model is champion again nothing serves from the pipeline serving
            # endpoint: its dedicated nodes would bill for no traffic. Undone before the record
            # changes, so a crash in between leaves a champion that a repeated call rolls back.
            _empty_serving(str(champion["endpoint"]), deps)
    else:
        endpoint, restored_id = _restore_on_serving(doc, champion, previous, deps)
    now = deps.clock().isoformat()
    entry = {
        **champion,
        "rolled_back_at": now,
        "restored_job_id": previous["job_id"],
        "restored_endpoint": endpoint,
        "restored_prompt_prefix": champion_prefix(previous),
    }

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


def _restorable_gemini(
    family: str, previous: Mapping[str, Any], deps: Dependencies
) -> tuple[str, str]:
    """Where a previous gemini champion serves, and its deployed id: it becomes champion again
    by record, on its own endpoint (kept when it was superseded), with no traffic change on any
    endpoint (Google documents no traffic split for a tuned Gemini model).

    Raises:
        RollbackTargetGoneError: its endpoint is gone or no longer serves its model.
        RetryableError: a backing service failed.
    """
    endpoint = str(previous.get("endpoint") or "")
    who = f"the previous champion of {family!r} (job {previous.get('job_id')})"
    try:
        info = deps.require_endpoints().get_endpoint(endpoint)
    except ObjectNotFoundError:
        raise RollbackTargetGoneError(
            f"{who} cannot be restored: its endpoint {endpoint} is gone"
        ) from None
    restored_id = info.deployed_id_of(str(previous["model"]))
    if restored_id is None:
        raise RollbackTargetGoneError(
            f"{who} cannot be restored: its endpoint {endpoint} no longer serves its tuned model "
            f"{previous['model']}"
        )
    return endpoint, restored_id


def _empty_serving(endpoint: str, deps: Dependencies) -> None:
    """Undeploy every model from the pipeline serving ``endpoint`` (kept, empty: an endpoint
    with nothing deployed costs nothing, and a later rollback to a pipeline model deploys it
    there again). Converges: a repeated call finds the models gone.

    Raises:
        RetryableError: a backing service failed.
    """
    endpoints = deps.require_endpoints()
    try:
        info = endpoints.get_endpoint(endpoint)
    except ObjectNotFoundError:
        return
    left = [d.deployed_model_id for d in info.deployed_models]
    for deployed_id in list(left):
        left.remove(deployed_id)
        split = {left[0]: 100} if left else None
        with contextlib.suppress(ObjectNotFoundError):
            endpoints.undeploy(endpoint, deployed_id, split)
        logger.info("undeployed %s from the serving endpoint %s", deployed_id, endpoint)


def _restore_on_serving(
    doc: Mapping[str, Any],
    champion: Mapping[str, Any],
    previous: Mapping[str, Any],
    deps: Dependencies,
) -> tuple[str, str]:
    """Give a previous pipeline champion all the traffic of the family's serving endpoint
    (deployed again if it was undeployed), taking the current champion off it when it serves
    there; the endpoint and the restored deployed id.

    A current gemini champion is not on that endpoint (its own stays as it is).

    Raises:
        PermanentError: the endpoint refuses the traffic change.
        RetryableError: a backing service failed.
    """
    endpoints = deps.require_endpoints()
    if evaluation.backend_of(champion) == evaluation.PIPELINE:
        endpoint = str(champion["endpoint"])
    else:
        endpoint = str(previous.get("endpoint") or evaluation.pipeline_serving(doc) or "")
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
    return endpoint, restored_id


def _mark_rolled_back(entry: Mapping[str, Any], deps: Dependencies) -> None:
    """Move the job of a rolled-back champion ``entry`` to ROLLED_BACK and announce it."""
    job_id = str(entry["job_id"])
    reason = (
        f"rolled back: the model of job {entry.get('restored_job_id')} serves "
        f"{entry.get('restored_endpoint') or entry.get('endpoint')} again"
    )
    restored_prefix = entry.get("restored_prompt_prefix")
    if restored_prefix:
        reason += f", asked with the prompt prefix {restored_prefix!r} before every prompt"
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


def replace_golden_set(family: str, uri: str, deps: Dependencies) -> dict[str, Any]:
    """Make the validated set at ``uri`` the golden set of ``family`` (an explicit act), and
    re-score the champion on it; returns the family's record as it now stands.

    The set must be a labeled JSONL that passes the eval-set rules (10 to 250 examples); it is
    frozen (``golden/<sha256>.jsonl``), the family's previous golden set is kept in
    ``golden_history``, and the champion's metrics on the new set (``champion.golden_metrics``)
    are those its endpoint answers now. Later jobs of the family are judged on it.

    Raises:
        NothingToRollBackError: the family has no record.
        GoldenSetError: the set is invalid, gone, or not labeled.
        FamilyBusyError: a promotion or a rollback of the family is under way.
        RetryableError: a backing service failed; calling again is safe.
    """
    from distillery.evaluation import TASKS, infer_task, score
    from distillery.validation import DatasetKind, validate_jsonl

    settings = deps.settings
    if deps.records.get(settings.models_collection, family) is None:
        raise NothingToRollBackError(f"model family {family!r} has no record")
    bucket, name = evaluation.split_gs(uri)
    info = deps.objects.find(bucket, name)
    if info is None:
        raise evaluation.GoldenSetError(f"there is no object {uri}")
    with deps.objects.open_read(bucket, name, info.generation) as reader:
        checked = validate_jsonl(reader, kind=DatasetKind.GOLDEN, source=info.uri)
    if not checked.report.valid:
        problems = "; ".join(rule.summary for rule in checked.report.errors)
        raise evaluation.GoldenSetError(f"{uri} is not a valid golden set: {problems}")
    golden = evaluation.freeze(
        info.uri,
        f"{info.uri} (generation {info.generation}), set by distillery golden",
        deps,
        info.generation,
    )
    holder = f"golden set {uuid.uuid4().hex[:12]}"
    _take_lease(family, holder, deps, create=False)
    try:
        doc = deps.records.get(settings.models_collection, family) or {}
        champion = doc.get("champion")
        metrics: dict[str, float] = {}
        if champion:
            answers = evaluation.champion_answers(
                champion, str(doc.get("endpoint") or ""), golden, deps
            )
            job = deps.records.get(settings.jobs_collection, str(champion.get("job_id"))) or {}
            configured = (job.get("spec") or {}).get("task")
            task = infer_task(
                golden.inputs, golden.expected, configured if configured in TASKS else None
            )
            metrics = dict(score(task.kind, golden.expected, answers.texts).metrics)
        now = deps.clock().isoformat()
        entry = golden.entry(now)

        def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None:
                return None
            if (current.get("golden") or {}).get("sha256") == golden.sha256:
                return None
            if current.get("golden"):
                current["golden_history"] = [*current.get("golden_history", []), current["golden"]]
            current["golden"] = entry
            if current.get("champion") and champion:
                current["champion"]["golden_metrics"] = metrics
            current["updated_at"] = now
            return current

        deps.records.transact(settings.models_collection, family, mutate)
    finally:
        _release_lease(family, holder, deps)
    result = deps.records.get(settings.models_collection, family) or {}
    logger.warning("model family %s is now judged on %s (from %s)", family, golden.uri, uri)
    return {k: v for k, v in result.items() if k != "lease"}
