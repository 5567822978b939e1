"""The resolver: one LaunchRequest + the deployment's settings → a resolved, explained plan.

What every accelerator candidate shares is resolved once (:func:`_resolve_common`); each candidate
then gets its own batch size, steps, evaluation, encryption and cost (:func:`_resolve_candidate`),
and :func:`resolve` picks the first candidate nothing refuses. The wording is :mod:`._explain`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distillery.core.models import LaunchRequest
from distillery.core.settings import Settings
from distillery.facts import (
    ACCELERATORS,
    DEFAULT_ACCELERATOR,
    DEFAULT_CHECKPOINT_SELECTION,
    DEFAULT_ENABLE_EARLY_STOPPING,
    DEFAULT_EVALUATION_INTERVAL,
    DEFAULT_LEARNING_RATE_MULTIPLIER,
    DEFAULT_TRAIN_STEPS,
    EVAL_MAX_EXAMPLES,
    EVAL_MIN_EXAMPLES,
    MAX_DATASET_EXAMPLES,
    TASK_STEP_RANGES,
    AcceleratorProfile,
)
from distillery.policy import _explain as explain
from distillery.policy._body import build_request_body
from distillery.policy._budget import estimate_accelerator_hours
from distillery.policy._gemini import resolve_gemini
from distillery.policy._model import JobSpec, Plan, PolicyUsage
from distillery.policy._names import default_model_display_name, output_directory
from distillery.policy._overrides import ReadOverrides, RequestedOverrides, read_overrides
from distillery.policy._regions import encryption, region_refusals, tensorboard_location
from distillery.policy._training import (
    TARGET_EPOCHS,
    batch_size,
    choose_train_steps,
    target_steps,
)

#: Nothing running, nothing spent: the usage of a plan made without the job records.
NO_USAGE = PolicyUsage()


@dataclass
class _Common:
    """What every accelerator candidate shares."""

    settings: Settings
    overrides: RequestedOverrides
    given: frozenset[str]
    usage: PolicyUsage
    dataset_uri: str
    dataset_examples: int
    eval_uri: str | None
    eval_examples: int | None
    pipeline_region: str
    upload_region: str
    teacher: str
    student: str
    model_display_name: str
    output_directory: str
    tensorboard: str | None
    service_account: str | None
    region_reasons: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    #: The override schema's warnings, listed last.
    notes: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    """One accelerator's resolution: its spec, reasons and the refusals specific to it."""

    spec: JobSpec
    reasons: list[str]
    refusals: list[str]


def resolve(
    request: LaunchRequest,
    settings: Settings,
    *,
    dataset_examples: int,
    eval_examples: int | None,
    usage: PolicyUsage = NO_USAGE,
    job_id: str | None = None,
    dataset_tokens: int | None = None,
    dataset_labeling: str | None = None,
) -> Plan:
    """Resolve ``request`` under SPEC.md and the organisation's policy in ``settings``.

    The backend is the ``backend`` override, else ``DISTILLERY_BACKEND``. A ``gemini`` job is
    resolved by :func:`distillery.policy._gemini.resolve_gemini` into a ``tuningJobs.create``
    body labelled with ``job_id`` (its planning cost counts ``dataset_tokens``, the dataset
    record's token count, or estimates them from ``dataset_examples`` when None; and
    ``dataset_labeling``, the record's ``labeling``, decides whether its teacher labels the
    training set first, :mod:`distillery.policy._labeling`); what follows is the ``pipeline``
    backend's resolution. Overrides of the other backend are refused.

    Pure: no I/O. Override values are read once, by the override schema
    (:func:`distillery.overrides.check_overrides`, the config sidecar's too): its errors become
    refusals in the schema's words, its warnings notes. Accelerator choice: an
    ``accelerator_type`` override is honoured or refused, never changed; otherwise the
    accelerators of ``DISTILLERY_ACCELERATORS`` are tried in order and the first that satisfies
    every constraint wins (``reasons`` says why earlier ones were skipped). A refused plan still
    carries the spec and body of the preferred accelerator, so the refusal can be recorded with
    what was asked.

    Raises:
        ConfigurationError: the project or the bucket (for the output directory) is not set.
        ValueError: a gemini job is resolved without a valid ``job_id`` (its label).
    """
    settings.require("project", "bucket")
    read = read_overrides(
        request.overrides, has_eval=request.eval_dataset_uri is not None, backend=settings.backend
    )
    backend = read.values.backend or settings.backend
    backend_reason = explain.backend(backend, overridden="backend" in read.given)
    if backend == "gemini":
        if job_id is None:
            raise ValueError("a gemini job's plan needs its job_id (it travels in a label)")
        return resolve_gemini(
            request,
            settings,
            read,
            job_id=job_id,
            dataset_examples=dataset_examples,
            eval_examples=eval_examples,
            dataset_tokens=dataset_tokens,
            usage=usage,
            backend_reason=backend_reason,
            dataset_labeling=dataset_labeling,
        )
    common = _resolve_common(request, settings, read, dataset_examples, eval_examples, usage)
    # A gemini-only key is refused by the override schema (read with the backend above).
    if "backend" in read.given:
        common.region_reasons.insert(0, backend_reason)

    if common.overrides.accelerator_type is not None:
        names: tuple[str, ...] = (common.overrides.accelerator_type,)
        origin = explain.ACCELERATOR_REQUESTED
    else:
        names = settings.accelerator_list
        origin = (
            explain.ACCELERATOR_DEFAULT
            if names == (DEFAULT_ACCELERATOR,)
            else explain.accelerator_first_choice(names)
        )
    candidates = [_resolve_candidate(ACCELERATORS[name], common) for name in names]

    chosen = next((c for c in candidates if not c.refusals), None)
    refusals = list(common.refusals)
    skipped_reasons: list[str] = []
    if chosen is not None:
        for skipped in candidates[: candidates.index(chosen)]:
            skipped_reasons.append(
                explain.accelerator_skipped(skipped.spec.accelerator_type, skipped.refusals)
            )
        if chosen is not candidates[0]:
            origin = explain.accelerator_fallback(names)
    else:
        chosen = candidates[0]
        for candidate in candidates:
            name = candidate.spec.accelerator_type
            refusals.extend(
                explain.for_accelerator(name, refusal) if len(names) > 1 else refusal
                for refusal in candidate.refusals
            )
    spec = chosen.spec
    reasons = [
        *common.region_reasons,
        *skipped_reasons,
        explain.accelerator(ACCELERATORS[spec.accelerator_type], origin),
        *common.reasons,
        *chosen.reasons,
        *common.notes,
    ]
    return Plan(
        spec=spec,
        reasons=reasons,
        refusals=refusals,
        request_body=build_request_body(spec),
    )


def _resolve_common(
    request: LaunchRequest,
    settings: Settings,
    read: ReadOverrides,
    dataset_examples: int,
    eval_examples: int | None,
    usage: PolicyUsage,
) -> _Common:
    eval_uri = request.eval_dataset_uri
    overrides, given = read.values, read.given
    refusals = list(read.refusals)

    # Regions.
    pipeline = settings.region
    refusals.extend(region_refusals("pipeline region", pipeline, settings))
    upload = overrides.location or pipeline
    refusals.extend(region_refusals("model upload region", upload, settings))
    region_reasons = [
        explain.pipeline_region(pipeline),
        explain.model_upload_region(upload, overridden=bool(overrides.location)),
    ]
    reasons: list[str] = []

    # Dataset. (Eval parameters without eval data are the override schema's refusal.)
    dataset_uri = request.dataset_uri or ""
    if not dataset_uri:
        refusals.append(explain.NO_DATASET)
    if dataset_examples < 1:
        refusals.append(explain.dataset_too_small(dataset_examples))
    elif dataset_examples > MAX_DATASET_EXAMPLES:
        refusals.append(explain.dataset_too_large(dataset_examples, MAX_DATASET_EXAMPLES))
    if (
        eval_uri is not None
        and eval_examples is not None
        and not EVAL_MIN_EXAMPLES <= eval_examples <= EVAL_MAX_EXAMPLES
    ):
        refusals.append(explain.eval_set_size(eval_examples, EVAL_MIN_EXAMPLES, EVAL_MAX_EXAMPLES))

    # Steps (the limit on explicit values; chosen values are capped per candidate).
    max_steps = settings.max_train_steps
    if max_steps and overrides.train_steps is not None and overrides.train_steps > max_steps:
        refusals.append(explain.train_steps_above_limit(overrides.train_steps, max_steps))

    # Concurrency.
    max_jobs = settings.max_concurrent_jobs
    if max_jobs and usage.running_jobs >= max_jobs:
        refusals.append(explain.too_many_jobs(usage.running_jobs, max_jobs))

    # TensorBoard: in the pipeline's region (a malformed name is the schema's refusal).
    tensorboard = overrides.tensorboard_resource_id
    if tensorboard is not None:
        location = tensorboard_location(tensorboard)
        if location is not None and location != pipeline:
            refusals.append(explain.tensorboard_elsewhere(location, pipeline))
        elif location is not None:
            reasons.append(explain.tensorboard(tensorboard))

    # Models, names, identity.
    teacher = overrides.teacher_model_reference or settings.teacher_model
    student = overrides.student_model_reference or settings.student_model
    for role, value, key, setting in (
        ("teacher", teacher, "teacher_model_reference", "teacher_model"),
        ("student", student, "student_model_reference", "student_model"),
    ):
        override = key if key in given else None
        reasons.append(explain.model(role, value, override=override, setting=setting))
    if overrides.model_display_name:
        model_name = overrides.model_display_name
        reasons.append(explain.model_display_name(model_name, dataset_file=None))
    else:
        model_name = default_model_display_name(dataset_uri)
        base = dataset_uri.rsplit("/", 1)[-1] or "(none)"
        reasons.append(explain.model_display_name(model_name, dataset_file=base))
    output = output_directory(settings, model_name)
    reasons.append(explain.output_directory(output))
    service_account = overrides.service_account or settings.service_account or None
    reasons.append(
        explain.service_account(service_account, overridden=bool(overrides.service_account))
    )

    return _Common(
        settings=settings,
        overrides=overrides,
        given=given,
        usage=usage,
        dataset_uri=dataset_uri,
        dataset_examples=dataset_examples,
        eval_uri=eval_uri,
        eval_examples=eval_examples if eval_uri is not None else None,
        pipeline_region=pipeline,
        upload_region=upload,
        teacher=teacher,
        student=student,
        model_display_name=model_name,
        output_directory=output,
        tensorboard=tensorboard,
        service_account=service_account,
        region_reasons=region_reasons,
        reasons=reasons,
        notes=read.notes,
        refusals=refusals,
    )


def _resolve_candidate(profile: AcceleratorProfile, common: _Common) -> _Candidate:
    settings = common.settings
    overrides = common.overrides
    reasons: list[str] = []
    refusals = region_refusals(f"{profile.name} tuning region", profile.tuning_region, settings)

    # Batch size.
    long_context = common.student in settings.long_context_student_list
    batch = batch_size(common.student, profile.tuning_region, settings.long_context_student_list)
    reasons.append(
        explain.batch(
            batch, common.student, long_context=long_context, tuning_region=profile.tuning_region
        )
    )

    # Steps.
    steps, steps_reason = _train_steps(overrides, common, batch)
    reasons.append(steps_reason)

    # Epochs.
    seen = steps * batch
    epochs = round(seen / common.dataset_examples, 4) if common.dataset_examples > 0 else 0.0
    reasons.append(explain.epochs(epochs, steps, batch, seen, common.dataset_examples))

    # Learning rate.
    lr = overrides.learning_rate_multiplier
    if lr is None:
        lr = DEFAULT_LEARNING_RATE_MULTIPLIER
        reasons.append(explain.learning_rate(lr, overridden=False))
    else:
        reasons.append(explain.learning_rate(lr, overridden=True))

    # Evaluation.
    interval: int | None = None
    early: bool | None = None
    selection: str | None = None
    if common.eval_uri is not None:
        interval = overrides.evaluation_interval or DEFAULT_EVALUATION_INTERVAL
        early = (
            DEFAULT_ENABLE_EARLY_STOPPING
            if overrides.enable_early_stopping is None
            else overrides.enable_early_stopping
        )
        selection = overrides.enable_checkpoint_selection or DEFAULT_CHECKPOINT_SELECTION
        reasons.append(
            explain.evaluation(common.eval_uri, interval, early, selection, given=common.given)
        )
        if interval > steps:
            reasons.append(explain.evaluation_interval_too_long(interval, steps))
    else:
        reasons.append(explain.NO_EVALUATION)

    # Encryption.
    encrypted = encryption(
        profile,
        requested=overrides.encryption_spec_key_name,
        settings=settings,
        pipeline=common.pipeline_region,
        upload=common.upload_region,
    )
    reasons.append(encrypted.reason)
    refusals.extend(encrypted.refusals)

    # Cost.
    hours = estimate_accelerator_hours(profile, steps, interval)
    reasons.append(explain.cost(hours, profile, steps, interval))
    budget = settings.daily_accelerator_hours
    spent = common.usage.accelerator_hours_today
    if budget and spent + hours > budget:
        refusals.append(explain.over_budget(spent, hours, budget))

    spec = JobSpec(
        project=settings.project,
        pipeline_region=common.pipeline_region,
        model_upload_region=common.upload_region,
        tuning_region=profile.tuning_region,
        accelerator_type=profile.name,
        accelerator_count=profile.count,
        accelerator_description=profile.description,
        dataset_uri=common.dataset_uri,
        dataset_examples=common.dataset_examples,
        task=overrides.task,
        teacher_model_reference=common.teacher,
        student_model_reference=common.student,
        student_context="32k" if long_context else "8k",
        batch_size=batch,
        train_steps=steps,
        examples_seen=seen,
        epochs=epochs,
        learning_rate_multiplier=lr,
        evaluation_data_uri=common.eval_uri,
        eval_examples=common.eval_examples,
        evaluation_interval=interval,
        enable_early_stopping=early,
        enable_checkpoint_selection=selection,
        tensorboard_resource_id=common.tensorboard,
        cmek_key=encrypted.key,
        service_account=common.service_account,
        model_display_name=common.model_display_name,
        display_name=common.model_display_name,
        output_directory=common.output_directory,
        template_uri=settings.template_uri,
        estimated_accelerator_hours=hours,
    )
    return _Candidate(spec=spec, reasons=reasons, refusals=refusals)


def _train_steps(overrides: RequestedOverrides, common: _Common, batch: int) -> tuple[int, str]:
    """The steps and the sentence explaining them (explicit values are limited elsewhere)."""
    task = overrides.task
    recommended = TASK_STEP_RANGES.get(task or "")
    if overrides.train_steps is not None:
        steps = overrides.train_steps
        return steps, explain.steps_override(steps, task, recommended)
    if recommended and task is not None:
        steps = choose_train_steps(task, common.dataset_examples, batch)
        reason = explain.steps_for_task(
            steps,
            task,
            target_epochs=TARGET_EPOCHS,
            examples=common.dataset_examples,
            batch=batch,
            wanted=target_steps(common.dataset_examples, batch),
            recommended=recommended,
        )
    else:
        steps = DEFAULT_TRAIN_STEPS
        reason = explain.steps_default(steps, task)
    max_steps = common.settings.max_train_steps
    if max_steps and steps > max_steps:
        reason += explain.steps_capped(max_steps)
        steps = max_steps
    return steps, reason
