"""The gemini backend's policy: one LaunchRequest → a Vertex AI ``tuningJobs.create`` plan.

The rules are SPEC "The successor on Google Cloud today" and the Gemini facts of
:mod:`distillery.facts` (tunable base models and their limits, tuning regions, CMEK in the
tuning region, adapter sizes, prices), with the organisation's constraints of
:class:`~distillery.core.settings.Settings` as the pipeline backend applies them (allowed regions,
data residency, required CMEK, concurrency) and a daily budget in estimated USD.

Two tuning modes (``tuning_mode``, else ``DISTILLERY_TUNING_MODE``): ``supervised`` sends a v1
``supervisedTuningSpec``; ``distillation`` sends a v1beta1 ``distillationSpec`` (early access for
allowlisted projects, :data:`~distillery.facts.GEMINI_DISTILLATION_REGION` only), in which a
teacher (``teacher_model``, else ``DISTILLERY_GEMINI_TEACHER_MODEL``) writes the responses to a
prompts-only dataset and the student, ``baseModel``, is tuned on them. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from distillery.core.models import LaunchRequest
from distillery.core.settings import DATA_RESIDENCY_AREAS, Settings
from distillery.facts import (
    DEFAULT_GEMINI_BASE_MODEL,
    DISPLAY_NAME_MAX,
    GEMINI_DEFAULT_LEARNING_RATE_MULTIPLIER,
    GEMINI_DISTILLATION_REGION,
    GEMINI_DISTILLATION_STUDENTS,
    GEMINI_DISTILLATION_TEACHERS,
    GEMINI_TUNING_API_VERSIONS,
    GEMINI_TUNING_PRICES_VERIFIED,
    GEMINI_TUNING_REGIONS,
    KMS_KEY_PATTERN,
    gemini_tuning_cost_usd,
    gemini_tuning_model,
)
from distillery.labeling import batch_job_body
from distillery.overrides import InvalidValue, kms_key_rule
from distillery.policy import _explain as explain
from distillery.policy._labeling import resolve_labeling
from distillery.policy._model import GeminiJobSpec, Plan, PolicyUsage
from distillery.policy._names import JOB_LABEL_KEY, default_model_display_name, job_label
from distillery.policy._overrides import ReadOverrides

#: The epochs a job is planned and sent with when ``epoch_count`` is not given. Not a documented
#: fact (unset, Vertex AI picks the epochs from the dataset): Distillery sends its own so the
#: planned cost is the cost of what is sent.
DEFAULT_EPOCH_COUNT = 3
#: Tokens per example assumed when the dataset record has no token count (records written before
#: validation counted tokens): a planning assumption for the budget check, not a measurement.
ESTIMATED_TOKENS_PER_EXAMPLE = 500


def gemini_region_refusals(region: str, settings: Settings) -> list[str]:
    """Why a tuning job may not run in ``region``: not a tuning region, not allowed, or outside
    the data-residency area."""
    if region not in GEMINI_TUNING_REGIONS:
        return [explain.not_a_tuning_region(region, GEMINI_TUNING_REGIONS)]
    refusals: list[str] = []
    # An empty DISTILLERY_ALLOWED_REGIONS allows every region the backend runs in.
    allowed = tuple(r.strip() for r in settings.allowed_regions.split(",") if r.strip())
    if allowed and region not in allowed:
        refusals.append(explain.region_not_allowed("tuning region", region, allowed))
    if settings.data_residency:
        prefixes = DATA_RESIDENCY_AREAS[settings.data_residency]
        if not region.startswith(prefixes):
            refusals.append(
                explain.residency_broken("tuning region", region, settings.data_residency, prefixes)
            )
    return refusals


def _encryption(
    requested: str | None, settings: Settings, region: str
) -> tuple[str | None, str, list[str]]:
    """The key (None: Google-managed), the reason, and the refusals of a tuning job in ``region``.

    A TuningJob's key must be in its own region; a requested key elsewhere is refused, a default
    key elsewhere is not used (and the job refused if CMEK is required).
    """
    refusals: list[str] = []
    key = requested or settings.cmek_key or None
    if key is None:
        if settings.require_cmek:
            refusals.append(explain.cmek_required_without_key())
        return None, explain.GOOGLE_MANAGED, refusals
    if not requested:
        # A requested key's shape was judged by the override schema; the default key is here.
        try:
            kms_key_rule(key)
        except InvalidValue as exc:
            return None, explain.GOOGLE_MANAGED, [explain.default_key_malformed(str(exc))]
    match = KMS_KEY_PATTERN.fullmatch(key)
    location = match["location"] if match else ""
    if location != region:
        elsewhere = explain.gemini_cmek_key_elsewhere(location, region, requested=bool(requested))
        if requested:
            refusals.append(elsewhere)
        elif settings.require_cmek:
            refusals.append(explain.cmek_required_but(elsewhere))
        reason = (
            explain.REQUESTED_KEY_UNUSABLE
            if requested
            else f"encryption: Google-managed key; {elsewhere}"
        )
        return None, reason, refusals
    return key, explain.gemini_cmek(requested=bool(requested), region=region), refusals


def resolve_gemini(
    request: LaunchRequest,
    settings: Settings,
    read: ReadOverrides,
    *,
    job_id: str,
    dataset_examples: int,
    eval_examples: int | None,
    dataset_tokens: int | None,
    usage: PolicyUsage,
    backend_reason: str,
    dataset_labeling: str | None = None,
) -> Plan:
    """The plan of a gemini-backend job (see :func:`distillery.policy.resolve`).

    Raises:
        ValueError: ``job_id`` is not a job id.
    """
    overrides = read.values
    # A pipeline-only key is refused by the override schema (read with this backend).
    refusals = list(read.refusals)
    region = settings.region
    refusals.extend(gemini_region_refusals(region, settings))
    reasons = [backend_reason, explain.tuning_region(region)]

    mode = overrides.tuning_mode or settings.tuning_mode
    api_version = GEMINI_TUNING_API_VERSIONS[mode]
    reasons.append(explain.tuning_mode(mode, api_version, overridden="tuning_mode" in read.given))
    teacher: str | None = None
    if mode == "distillation":
        if region != GEMINI_DISTILLATION_REGION:
            refusals.append(explain.distillation_region(region, GEMINI_DISTILLATION_REGION))
        teacher = overrides.teacher_model or settings.gemini_teacher_model
        reasons.append(explain.teacher_model(teacher, overridden="teacher_model" in read.given))
        if teacher not in GEMINI_DISTILLATION_TEACHERS:
            refusals.append(explain.not_a_distillation_teacher(teacher))
    # A supervised job's teacher_model is its labeling teacher (_labeling judges it).

    model_id = overrides.base_model or DEFAULT_GEMINI_BASE_MODEL
    model = gemini_tuning_model(model_id)
    reasons.append(
        explain.base_model(model.model_id, model.name, overridden="base_model" in read.given)
    )
    if mode == "distillation" and model.model_id not in GEMINI_DISTILLATION_STUDENTS:
        refusals.append(explain.distillation_student(model.model_id, GEMINI_DISTILLATION_STUDENTS))

    dataset_uri = request.dataset_uri or ""
    if not dataset_uri:
        refusals.append(explain.NO_DATASET)
    elif mode == "distillation":
        reasons.append(explain.distillation_prompts(dataset_uri))
    if dataset_examples < 1:
        refusals.append(explain.dataset_too_small(dataset_examples))
    elif dataset_examples > model.max_training_examples:
        refusals.append(
            explain.training_examples_above(
                dataset_examples, model.max_training_examples, model.model_id
            )
        )
    eval_uri = request.eval_dataset_uri
    if (
        eval_uri is not None
        and eval_examples is not None
        and eval_examples > model.max_validation_examples
    ):
        refusals.append(
            explain.validation_examples_above(
                eval_examples, model.max_validation_examples, model.model_id
            )
        )
    reasons.append(explain.validation(eval_uri))

    max_jobs = settings.max_concurrent_jobs
    if max_jobs and usage.running_jobs >= max_jobs:
        refusals.append(explain.too_many_jobs(usage.running_jobs, max_jobs))

    epochs = overrides.epoch_count or DEFAULT_EPOCH_COUNT
    reasons.append(explain.epoch_count(epochs, overridden="epoch_count" in read.given))
    lr = overrides.learning_rate_multiplier
    reasons.append(
        explain.learning_rate(
            lr or GEMINI_DEFAULT_LEARNING_RATE_MULTIPLIER, overridden=lr is not None
        )
    )
    lr = lr or GEMINI_DEFAULT_LEARNING_RATE_MULTIPLIER
    adapter = overrides.adapter_size
    if adapter is not None and adapter not in model.adapter_sizes:
        refusals.append(
            explain.adapter_size_unsupported(adapter, model.model_id, model.adapter_sizes)
        )
    reasons.append(explain.adapter_size(adapter, overridden=adapter is not None))

    if overrides.model_display_name:
        display = overrides.model_display_name
        reasons.append(explain.tuned_model_display_name(display, dataset_file=None))
    else:
        display = default_model_display_name(dataset_uri)
        base = dataset_uri.rsplit("/", 1)[-1] or "(none)"
        reasons.append(explain.tuned_model_display_name(display, dataset_file=base))
    label = job_label(job_id)
    reasons.append(explain.job_label(JOB_LABEL_KEY, label))

    key, encryption_reason, encryption_refusals = _encryption(
        overrides.encryption_spec_key_name, settings, region
    )
    reasons.append(encryption_reason)
    refusals.extend(encryption_refusals)
    service_account = overrides.service_account or settings.service_account or None
    reasons.append(
        explain.service_account(
            service_account, overridden=bool(overrides.service_account), tuning=True
        )
    )

    counted = dataset_tokens is not None
    tokens = (
        dataset_tokens
        if dataset_tokens is not None
        else max(dataset_examples, 0) * ESTIMATED_TOKENS_PER_EXAMPLE
    )
    reasons.append(
        explain.dataset_tokens(
            tokens,
            counted=counted,
            examples=dataset_examples,
            per_example=ESTIMATED_TOKENS_PER_EXAMPLE,
        )
    )
    labeling = resolve_labeling(
        read,
        settings,
        tuning_mode=mode,
        dataset_labeling=dataset_labeling,
        job_id=job_id,
        job_label=label,
        region=region,
        dataset_uri=dataset_uri,
        dataset_examples=dataset_examples,
        dataset_tokens=tokens,
    )
    reasons.extend(labeling.reasons)
    refusals.extend(labeling.refusals)
    tuning_tokens = tokens
    if labeling.spec is not None:
        assert labeling.tuning_tokens is not None and labeling.training_examples is not None
        tuning_tokens = labeling.tuning_tokens
        reasons.append(explain.two_task_tokens(tuning_tokens, labeling.training_examples))
        if labeling.training_examples > model.max_training_examples:
            refusals.append(
                explain.two_task_examples_above(
                    labeling.training_examples, model.max_training_examples, model.model_id
                )
            )
    tuning_usd = round(gemini_tuning_cost_usd(model.model_id, tuning_tokens, epochs), 2)
    reasons.append(
        explain.tuning_cost(
            tuning_usd,
            tuning_tokens,
            epochs,
            model.usd_per_million_training_tokens,
            verified=GEMINI_TUNING_PRICES_VERIFIED,
        )
    )
    if mode == "distillation":
        reasons.append(explain.DISTILLATION_COST_CAVEAT)
    # The budget covers what the job spends: the labeling batch job and the tuning job.
    labeling_usd = labeling.estimated_cost_usd
    usd = round(tuning_usd + labeling_usd, 2)
    budget = settings.daily_tuning_usd
    if budget and usage.tuning_usd_today + usd > budget:
        refusals.append(
            explain.over_tuning_budget_with_labeling(
                usage.tuning_usd_today, tuning_usd, labeling_usd, budget
            )
            if labeling.spec is not None
            else explain.over_tuning_budget(usage.tuning_usd_today, usd, budget)
        )
    reasons.extend(read.notes)

    spec = GeminiJobSpec(
        project=settings.project,
        tuning_region=region,
        base_model=model.model_id,
        dataset_uri=dataset_uri,
        dataset_examples=dataset_examples,
        dataset_tokens=tokens,
        dataset_tokens_counted=counted,
        validation_dataset_uri=eval_uri,
        eval_examples=eval_examples if eval_uri is not None else None,
        epoch_count=epochs,
        learning_rate_multiplier=lr,
        adapter_size=adapter,
        task=overrides.task,
        cmek_key=key,
        service_account=service_account,
        tuned_model_display_name=display,
        job_label=label,
        estimated_cost_usd=usd,
        tuning_mode=mode,
        teacher_model=teacher,
        api_version=api_version,
        labeling=labeling.spec.to_dict() if labeling.spec is not None else None,
    )
    labeling_body = (
        batch_job_body(
            labeling.spec, display_name=labeling_display_name(display), label_key=JOB_LABEL_KEY
        )
        if labeling.spec is not None
        else None
    )
    return Plan(
        spec=spec,
        reasons=reasons,
        refusals=refusals,
        request_body=build_tuning_body(spec),
        labeling=spec.labeling,
        labeling_body=labeling_body,
    )


def labeling_display_name(tuned_model_display_name: str) -> str:
    """The batch prediction job's ``displayName``: the tuned model's, marked as its labeling
    run, within the display-name limit."""
    suffix = " labeling"
    return tuned_model_display_name[: DISPLAY_NAME_MAX - len(suffix)] + suffix


def build_tuning_body(spec: GeminiJobSpec) -> dict[str, Any]:
    """The ``tuningJobs.create`` body (a REST ``TuningJob``) of ``spec``: only what applies.

    Supervised: a v1 ``supervisedTuningSpec``. Distillation: a v1beta1 ``distillationSpec``
    with ``baseTeacherModel``, the student in ``baseModel``. Its fields are those of
    google-cloud-aiplatform 2.7.0's ``aiplatform_v1beta1.types.DistillationSpec``: the prompt
    file goes in ``trainingDatasetUri``, since that message has no ``promptDatasetUri`` (newer
    references add it and deprecate ``trainingDatasetUri``; the installed client's
    ``TuningJob.from_json`` refuses a field the message lacks). ``studentModel`` and
    ``pipelineRootDirectory`` are not sent: the newer references deprecate both (the student is
    ``baseModel``). ``DistillationHyperParameters`` has the same three fields as the supervised
    ones, ``adapterSize`` being the same ``SupervisedHyperParameters.AdapterSize`` enum.
    """
    hyper: dict[str, Any] = {
        "epochCount": spec.epoch_count,
        "learningRateMultiplier": spec.learning_rate_multiplier,
    }
    if spec.adapter_size is not None:
        hyper["adapterSize"] = spec.adapter_size
    tuning: dict[str, Any] = {}
    if spec.tuning_mode == "distillation":
        tuning["baseTeacherModel"] = spec.teacher_model
    # A labeling job trains on the two-task file its labeling run writes, never on the
    # validated copy (which holds the prompts, or the labels without rationales).
    tuning["trainingDatasetUri"] = (
        spec.labeling["training_uri"] if spec.labeling is not None else spec.dataset_uri
    )
    if spec.validation_dataset_uri is not None:
        tuning["validationDatasetUri"] = spec.validation_dataset_uri
    tuning["hyperParameters"] = hyper
    spec_key = "distillationSpec" if spec.tuning_mode == "distillation" else "supervisedTuningSpec"
    body: dict[str, Any] = {
        "baseModel": spec.base_model,
        spec_key: tuning,
        "tunedModelDisplayName": spec.tuned_model_display_name,
        "labels": {JOB_LABEL_KEY: spec.job_label},
    }
    if spec.cmek_key is not None:
        body["encryptionSpec"] = {"kmsKeyName": spec.cmek_key}
    if spec.service_account is not None:
        body["serviceAccount"] = spec.service_account
    return body
