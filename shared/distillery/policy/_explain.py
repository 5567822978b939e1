"""Every sentence a plan says: one reason per choice, one refusal per broken rule.

The resolver decides, this module words: each function returns one sentence, so the wording of
a plan can be read (and changed) in one place. Sentences name the setting (its environment
variable) or the override a value came from, and SPEC where a rule is SPEC's.
"""

from __future__ import annotations

from collections.abc import Iterable

from distillery.core.settings import Settings
from distillery.facts import AcceleratorProfile
from distillery.overrides import Problem
from distillery.policy._budget import (
    EVALUATION_PASS_SECONDS,
    PIPELINE_OVERHEAD_HOURS,
    evaluations,
)

# --- Overrides -----------------------------------------------------------------------------------


def override_refusal(problem: Problem) -> str:
    """An error of the override schema, as a refusal (its message unchanged)."""
    return f"override {problem.field}: {problem.message}"


def override_note(problem: Problem) -> str:
    """A warning of the override schema, as the note that ends the reasons."""
    return f"note: override {problem.field}: {problem.message}"


# --- Regions -------------------------------------------------------------------------------------


def pipeline_region(region: str) -> str:
    """Why the pipeline runs in ``region``."""
    return f"pipeline region {region}: {Settings.env_name('region')} (where the pipeline runs)"


def model_upload_region(region: str, *, overridden: bool) -> str:
    """Why the model is uploaded to ``region``."""
    source = "the location override" if overridden else "the pipeline region (no location)"
    return f"model upload region {region}: {source}"


def not_a_distillation_region(role: str, region: str, supported: tuple[str, ...]) -> str:
    """Refusal: ``region`` (playing ``role``) is not a region distillation runs in."""
    return (
        f"the {role} {region} is not a distillation region "
        f"(SPEC: use one of {', '.join(supported)})"
    )


def region_not_allowed(role: str, region: str, allowed: tuple[str, ...]) -> str:
    """Refusal: the organisation does not allow ``region``."""
    return (
        f"the {role} {region} is not allowed "
        f"({Settings.env_name('allowed_regions')}: {', '.join(allowed)})"
    )


def residency_broken(role: str, region: str, residency: str, prefixes: tuple[str, ...]) -> str:
    """Refusal: ``region`` lies outside the data-residency area."""
    area = ", ".join(f"{prefix}*" for prefix in prefixes)
    return (
        f"the {role} {region} breaks the {residency} data residency "
        f"({Settings.env_name('data_residency')}={residency} allows {area} regions only)"
    )


def tensorboard_elsewhere(location: str, pipeline: str) -> str:
    """Refusal: the TensorBoard is not in the pipeline's region."""
    return f"the TensorBoard is in {location}; it must be in the pipeline region {pipeline} (SPEC)"


def tensorboard(resource: str) -> str:
    """Why the TensorBoard is accepted."""
    return f"TensorBoard {resource}: in the pipeline region, as SPEC requires"


# --- Accelerators --------------------------------------------------------------------------------


def accelerator(profile: AcceleratorProfile, origin: str) -> str:
    """Why the job tunes on ``profile``; ``origin`` is one of the ``accelerator_*`` origins."""
    return (
        f"accelerator {profile.name}: {origin}; tuning runs in {profile.tuning_region} "
        f"on {profile.description}"
    )


ACCELERATOR_REQUESTED = "requested by the accelerator_type override"
ACCELERATOR_DEFAULT = "the default"


def accelerator_first_choice(names: tuple[str, ...]) -> str:
    """Origin: the first accelerator of the preference setting."""
    return f"first choice of {Settings.env_name('accelerators')}={','.join(names)}"


def accelerator_fallback(names: tuple[str, ...]) -> str:
    """Origin: an accelerator later in the preference, the earlier ones being refused."""
    return f"the first of {','.join(names)} that satisfies every constraint"


def accelerator_skipped(name: str, refusals: list[str]) -> str:
    """Why an accelerator earlier in the preference was not used."""
    return f"accelerator {name} skipped: " + "; ".join(refusals)


def for_accelerator(name: str, refusal: str) -> str:
    """A refusal of one of several accelerator candidates, saying which."""
    return f"accelerator {name}: {refusal}"


# --- Dataset, evaluation set and limits ----------------------------------------------------------

NO_DATASET = "the request names no dataset (dataset_uri)"


def dataset_too_small(examples: int) -> str:
    """Refusal: the dataset holds no example."""
    return f"the dataset has {examples} examples; it needs at least 1"


def dataset_too_large(examples: int, maximum: int) -> str:
    """Refusal: the dataset holds more examples than SPEC allows."""
    return f"the dataset has {examples} examples; SPEC allows at most {maximum}"


def eval_set_size(examples: int, minimum: int, maximum: int) -> str:
    """Refusal: the eval set's size is outside SPEC's range."""
    return f"the eval set has {examples} examples; SPEC wants between {minimum} and {maximum}"


def train_steps_above_limit(steps: int, limit: int) -> str:
    """Refusal: an explicit ``train_steps`` is above the organisation's limit."""
    return f"train_steps {steps} is above {Settings.env_name('max_train_steps')}={limit}"


def too_many_jobs(running: int, limit: int) -> str:
    """Refusal: the concurrency limit is reached."""
    return (
        f"{running} jobs are active and {Settings.env_name('max_concurrent_jobs')}"
        f"={limit}: launch again when one finishes"
    )


# --- Models, names, identity ---------------------------------------------------------------------


def model(role: str, reference: str, *, override: str | None, setting: str) -> str:
    """Why the ``role`` model (teacher, student) is ``reference``."""
    source = f"the {override} override" if override else Settings.env_name(setting)
    return f"{role} {reference}: {source}"


def model_display_name(name: str, *, dataset_file: str | None) -> str:
    """Why the model is called ``name``: the override, or derived from ``dataset_file``."""
    if dataset_file is None:
        return f"model display name {name}: the model_display_name override"
    return f"model display name {name}: derived from the dataset file {dataset_file}"


def output_directory(directory: str) -> str:
    """Where the pipeline writes."""
    return (
        f"output directory {directory}: the pipeline root for this model; Vertex AI writes each "
        "run under <root>/<project number>/<pipelineJobId>/"
    )


def service_account(account: str | None, *, overridden: bool, tuning: bool = False) -> str:
    """Which service account the job runs as (``tuning``: a tuning job, which without one runs
    as the project's Vertex AI Secure Fine-Tuning Service Agent, as ``TuningJob.service_account``
    documents; a pipeline job runs as the Compute Engine default)."""
    if account is None:
        default = (
            "the project's Vertex AI Secure Fine-Tuning Service Agent"
            if tuning
            else "the project's Compute Engine default"
        )
        return (
            f"service account: {default} "
            f"(no override, {Settings.env_name('service_account')} unset), so none is sent"
        )
    return f"service account {account}: {'the override' if overridden else 'configured'}"


# --- Training parameters -------------------------------------------------------------------------


def batch(size: int, student: str, *, long_context: bool, tuning_region: str) -> str:
    """Why the batch size is ``size``."""
    context = "32k" if long_context else "8k"
    article = "a" if long_context else "an"
    where = "in every tuning region" if long_context else f"and tuning runs in {tuning_region}"
    return f"batch size {size}: {student} has {article} {context} context {where}"


def steps_override(steps: int, task: str | None, recommended: tuple[int, int] | None) -> str:
    """Why the steps are ``steps``: the override (noting a task's recommendation it ignores)."""
    reason = f"train steps {steps}: the train_steps override"
    if recommended and not recommended[0] <= steps <= recommended[1]:
        low, high = recommended
        reason += f" (note: outside the {low}-{high} SPEC recommends for {task})"
    return reason


def steps_for_task(
    steps: int,
    task: str,
    *,
    target_epochs: float,
    examples: int,
    batch: int,
    wanted: int,
    recommended: tuple[int, int],
) -> str:
    """Why the steps are ``steps``: chosen for ``task``."""
    return (
        f"train steps {steps}: task {task} aims at {target_epochs:g} epochs "
        f"(ceil({target_epochs:g} x {examples} / {batch}) = {wanted}), "
        f"kept within the recommended {recommended[0]}-{recommended[1]}"
    )


def steps_default(steps: int, task: str | None) -> str:
    """Why the steps are the default ``steps``."""
    why = f"task {task} has no recommended range" if task else "no train_steps and no task"
    return f"train steps {steps}: the default ({why})"


def steps_capped(limit: int) -> str:
    """What is appended to a chosen step count capped by the organisation's limit."""
    return f"; capped to {limit} by {Settings.env_name('max_train_steps')}"


def epochs(epochs: float, steps: int, batch: int, seen: int, examples: int) -> str:
    """How many passes over the dataset the steps make."""
    return (
        f"epochs {epochs:g}: {steps} steps x {batch} = {seen} examples seen / {examples} examples"
    )


def learning_rate(multiplier: float, *, overridden: bool) -> str:
    """Why the learning rate multiplier is ``multiplier``."""
    source = "the learning_rate_multiplier override" if overridden else "the default"
    return f"learning rate multiplier {multiplier!r}: {source}"


def evaluation(
    uri: str,
    interval: int,
    early_stopping: bool,
    selection: str,
    *,
    given: frozenset[str],
) -> str:
    """How the job evaluates on ``uri``; ``given`` are the overridden parameters."""

    def origin(name: str) -> str:
        return "override" if name in given else "default"

    return (
        f"evaluation on {uri}: every {interval} steps ({origin('evaluation_interval')}), early "
        f"stopping {'on' if early_stopping else 'off'} ({origin('enable_early_stopping')}), "
        f"checkpoint selection {selection!r} ({origin('enable_checkpoint_selection')})"
    )


def evaluation_interval_too_long(interval: int, steps: int) -> str:
    """A note: the interval is longer than the job."""
    return (
        f"note: evaluation_interval {interval} is above train_steps {steps}, so the "
        "model is evaluated at most once"
    )


NO_EVALUATION = "no evaluation: no eval data, so no eval parameter is sent"


# --- Encryption ----------------------------------------------------------------------------------


def cmek_unavailable(reasons: list[str], cmek_region: str) -> str:
    """Why CMEK cannot protect a job, from each of ``reasons``."""
    return (
        " and ".join(reasons) + f" — CMEK needs GPU tuning with the pipeline and model upload in "
        f"{cmek_region}"
    )


def no_cmek_on(profile: AcceleratorProfile) -> str:
    """A reason CMEK is unavailable: the accelerator's tuning has none."""
    return f"{profile.name} tuning has no CMEK (it runs in {profile.tuning_region})"


def region_is_not(what: str, region: str, cmek_region: str) -> str:
    """A reason CMEK is unavailable: ``what`` (a region) is not the CMEK region."""
    return f"the {what} is {region}, not {cmek_region}"


def cmek_requested_but(unavailable: str) -> str:
    """Refusal: an override asked for CMEK where it cannot apply."""
    return f"CMEK was requested (encryption_spec_key_name) but {unavailable}"


def cmek_required_but(unavailable: str) -> str:
    """Refusal: the organisation requires CMEK where it cannot apply."""
    return f"{Settings.env_name('require_cmek')} is set but {unavailable}"


def cmek_required_without_key() -> str:
    """Refusal: the organisation requires CMEK and no key is given."""
    return (
        f"{Settings.env_name('require_cmek')} is set but no key is given: set the "
        f"encryption_spec_key_name override or {Settings.env_name('cmek_key')}"
    )


def default_key_malformed(message: str) -> str:
    """Refusal: the default key breaks the key rule (``message`` is the schema's wording)."""
    return f"{Settings.env_name('cmek_key')} {message}"


def default_key_elsewhere(location: str, cmek_region: str) -> str:
    """Refusal: the default key is in another region."""
    return f"the CMEK key is in {location}; it must be in {cmek_region} with the job"


REQUESTED_KEY_UNUSABLE = "encryption: the requested CMEK key cannot be used here (see refusals)"
GOOGLE_MANAGED = "encryption: Google-managed key (no CMEK key given)"


def default_key_not_used(unavailable: str) -> str:
    """Why the default key is not used (the job stays Google-managed)."""
    return (
        f"encryption: Google-managed key; the default {Settings.env_name('cmek_key')} "
        f"is not used because {unavailable}"
    )


def cmek(*, requested: bool, cmek_region: str) -> str:
    """Why the job is encrypted with a customer-managed key."""
    source = "the encryption_spec_key_name override" if requested else "the default key"
    return f"encryption: CMEK with {source} (GPU, pipeline and model upload in {cmek_region})"


# --- Cost ----------------------------------------------------------------------------------------


def cost(hours: float, profile: AcceleratorProfile, steps: int, interval: int | None) -> str:
    """How the accelerator-hours were estimated (the formula of :mod:`._budget`)."""
    passes = (
        f" + {evaluations(steps, interval)} evaluations x {EVALUATION_PASS_SECONDS:g} s"
        if interval
        else ""
    )
    return (
        f"estimated accelerator-hours {hours:g}: ({PIPELINE_OVERHEAD_HOURS:g} h overhead + "
        f"{steps} steps x {profile.seconds_per_step:g} s{passes}) x {profile.count} "
        "accelerators (a planning estimate)"
    )


def over_budget(spent: float, hours: float, budget: float) -> str:
    """Refusal: the job would exceed the daily budget."""
    return (
        f"the daily budget would be exceeded: {spent:g} accelerator-hours used today + "
        f"{hours:g} for this job > {Settings.env_name('daily_accelerator_hours')}={budget:g}"
    )


# --- Backends ------------------------------------------------------------------------------------


def backend(name: str, *, overridden: bool) -> str:
    """Why the job runs on backend ``name``."""
    source = "the backend override" if overridden else Settings.env_name("backend")
    what = (
        "Vertex AI supervised tuning (tuningJobs)"
        if name == "gemini"
        else "the Vertex AI distillation pipeline (pipelineJobs)"
    )
    return f"backend {name}: {source} ({what})"


# --- The gemini backend --------------------------------------------------------------------------


def tuning_region(region: str) -> str:
    """Why the tuning job runs in ``region``."""
    return (
        f"tuning region {region}: {Settings.env_name('region')} (where the tuning job runs and "
        "its tuned model lives)"
    )


def not_a_tuning_region(region: str, supported: tuple[str, ...]) -> str:
    """Refusal: ``region`` is not a region Gemini supervised tuning runs in."""
    return (
        f"the tuning region {region} is not a Gemini supervised tuning region "
        f"(use one of {', '.join(supported)})"
    )


def base_model(model: str, name: str, *, overridden: bool) -> str:
    """Why ``model`` is tuned."""
    source = "the base_model override" if overridden else "the default base model"
    return f"base model {model} ({name}): {source}"


def training_examples_above(examples: int, maximum: int, model: str) -> str:
    """Refusal: more training examples than ``model`` takes."""
    return f"the dataset has {examples:,} examples; {model} tunes on at most {maximum:,}"


def validation_examples_above(examples: int, maximum: int, model: str) -> str:
    """Refusal: more validation examples than ``model`` takes."""
    return f"the eval set has {examples:,} examples; {model} validates on at most {maximum:,}"


def validation(uri: str | None) -> str:
    """Whether a validation dataset is sent."""
    if uri is None:
        return "no validation dataset: no eval data, so no validationDatasetUri is sent"
    return f"validation dataset {uri}: the eval set"


def epoch_count(epochs: int, *, overridden: bool) -> str:
    """Why the job runs ``epochs`` epochs."""
    if overridden:
        return f"epochs {epochs}: the epoch_count override"
    return (
        f"epochs {epochs}: Distillery's default, always sent so the planned cost is the billed "
        "one (unset, Vertex AI would choose)"
    )


def adapter_size(size: str | None, *, overridden: bool) -> str:
    """The adapter size sent, or why none is."""
    if size is None:
        return "adapter size: not sent (Vertex AI's default for the base model)"
    return f"adapter size {size}: the adapter_size override"


def adapter_size_unsupported(size: str, model: str, allowed: tuple[str, ...]) -> str:
    """Refusal: ``model`` takes no adapter of ``size``."""
    return f"override adapter_size: {model} takes {', '.join(allowed)}, not {size}"


def tuned_model_display_name(name: str, *, dataset_file: str | None) -> str:
    """Why the tuned model is named ``name``."""
    source = f"from the dataset file {dataset_file}" if dataset_file else "the override"
    return f"tuned model display name {name}: {source}"


def job_label(key: str, value: str) -> str:
    """Why the job carries its id in a label."""
    return (
        f"label {key}={value}: tuningJobs take no client-chosen id, so the launcher finds a job "
        "it already created by this label"
    )


def gemini_cmek_key_elsewhere(location: str, region: str, *, requested: bool) -> str:
    """Refusal or reason: the key is not in the tuning region."""
    source = "the encryption_spec_key_name key" if requested else "the default key"
    return f"{source} is in {location}; a tuning job's key must be in its region {region}"


def gemini_cmek(*, requested: bool, region: str) -> str:
    """Why the tuning job is encrypted with a customer-managed key."""
    source = "the encryption_spec_key_name override" if requested else "the default key"
    return f"encryption: CMEK with {source} (a key in the tuning region {region})"


def dataset_tokens(tokens: int, *, counted: bool, examples: int, per_example: int) -> str:
    """Where the dataset's token count comes from."""
    if counted:
        return f"dataset tokens {tokens:,}: counted by validation (estimated from the text)"
    return (
        f"dataset tokens {tokens:,}: estimated as {examples:,} examples x {per_example:,} tokens "
        "(the dataset record has no token count; a planning assumption)"
    )


def tuning_cost(usd: float, tokens: int, epochs: int, price: float, *, verified: bool) -> str:
    """How the tuning cost was estimated."""
    caveat = "" if verified else "; the price is an unverified list price"
    return (
        f"estimated tuning cost ${usd:,.2f}: {tokens:,} tokens x {epochs} epochs x "
        f"${price:g} per 1M training tokens (a planning estimate{caveat})"
    )


def over_tuning_budget(spent: float, usd: float, budget: float) -> str:
    """Refusal: the job would exceed the daily tuning budget."""
    return (
        f"the daily tuning budget would be exceeded: ${spent:,.2f} estimated today + "
        f"${usd:,.2f} for this job > {Settings.env_name('daily_tuning_usd')}={budget:g}"
    )


# --- The gemini backend's distillation mode ------------------------------------------------------


def tuning_mode(mode: str, api_version: str, *, overridden: bool) -> str:
    """Why the job runs in ``mode``, through which API version."""
    source = "the tuning_mode override" if overridden else Settings.env_name("tuning_mode")
    if mode == "distillation":
        return (
            f"tuning mode distillation: {source}; a {api_version} distillationSpec, early access "
            "for allowlisted projects only (a project without access is refused by Vertex AI)"
        )
    return f"tuning mode supervised: {source}; a {api_version} supervisedTuningSpec"


def distillation_region(region: str, required: str) -> str:
    """Refusal: distillation runs in one region only."""
    return (
        f"the tuning region {region} cannot run the distillation mode: distillationSpec is "
        f"available in {required} only"
    )


def distillation_student(model: str, students: tuple[str, ...]) -> str:
    """Refusal: ``model`` is not a student of the distillation mode."""
    return (
        f"the base model {model} cannot be a distillation student (early access lists "
        f"{', '.join(students)}); set base_model or tuning_mode=supervised"
    )


def teacher_model(model: str, *, overridden: bool) -> str:
    """Why ``model`` teaches."""
    source = (
        "the teacher_model override" if overridden else Settings.env_name("gemini_teacher_model")
    )
    return (
        f"teacher {model}: {source}; it writes the responses (and reasoning) to the dataset's "
        "prompts, which the student is tuned on"
    )


def not_a_distillation_teacher(model: str) -> str:
    """Refusal: ``model`` labels through batch prediction; it is no distillation teacher."""
    return (
        f"override teacher_model: {model} is a labeling teacher (rationales=teacher); the "
        "distillation mode's baseTeacherModel is one of its own "
        f"({Settings.env_name('gemini_teacher_model')} names the default)"
    )


def teacher_without_distillation() -> str:
    """Refusal: a teacher was named for a supervised job that does not label."""
    return (
        "override teacher_model applies to the distillation mode only, or to a supervised job "
        "whose teacher labels its training set; this job runs in the supervised mode on the "
        "dataset's own labels (set tuning_mode=distillation or rationales=teacher, or remove "
        "the key)"
    )


def distillation_prompts(uri: str) -> str:
    """What the training file of a distillation job holds."""
    return (
        f"prompt dataset {uri}: the validated copy holds the user turns only (the teacher "
        "writes the responses); sent as distillationSpec.trainingDatasetUri, the installed "
        "v1beta1 client's field for it"
    )


DISTILLATION_COST_CAVEAT = (
    "note: the distillation mode's cost adds the teacher's inference, which this estimate "
    "leaves out (no distillation price is documented)"
)


# --- The gemini backend's labeling stage (distilling step-by-step) --------------------------------

_LABELING_MODES = {
    "labels_and_rationales": "the training set is unlabeled: the teacher writes each label and "
    "its rationale",
    "rationales": "the training set's own labels are kept: the teacher explains each one",
}


def labeling(mode: str, examples: int, region: str, *, overridden: bool) -> str:
    """Why the job labels, and how."""
    source = (
        "the rationales override"
        if overridden
        else "the default for an unlabeled training set (rationales=teacher)"
    )
    return (
        f"labeling {mode}: {source}; {_LABELING_MODES[mode]}, for {examples:,} examples, in one "
        f"batch prediction job in {region} (state LABELING) before the tuning job is created"
    )


def no_labeling(*, overridden: bool) -> str:
    """Why the job tunes on the dataset's labels alone."""
    source = (
        "the rationales=none override"
        if overridden
        else "the default for a labeled training set (rationales=none)"
    )
    return f"no labeling: {source}; the job tunes on the dataset's own labels, without rationales"


def labeling_teacher(model: str, name: str, *, overridden: bool) -> str:
    """Why ``model`` labels."""
    source = (
        "the teacher_model override" if overridden else Settings.env_name("labeling_teacher_model")
    )
    return f"labeling teacher {model} ({name}): {source}; it answers every prompt at batch price"


def labeling_cost(
    usd: float, input_tokens: int, output_tokens: int, per_example: int, *, verified: bool
) -> str:
    """How the batch job's cost was estimated."""
    caveat = "" if verified else "; the teacher's price is an unverified list price"
    return (
        f"estimated labeling cost ${usd:,.2f}: {input_tokens:,} input tokens (the prompts and the "
        f"instruction) and {output_tokens:,} output tokens ({per_example:,} per example: the "
        "rationale, the answer and the teacher's thinking, billed as output; Distillery's "
        f"planning assumption) at half the online price (batch prediction){caveat}"
    )


def labeling_threshold(fraction: float, examples: int, *, overridden: bool) -> str:
    """The share of examples that must come back labeled."""
    source = (
        "the min_labeled_fraction override"
        if overridden
        else Settings.env_name("labeling_min_fraction")
    )
    needed = -(-round(fraction * examples * 1_000_000) // 1_000_000)
    return (
        f"labeled fraction at least {fraction:g}: {source}; tuning goes on only if {needed:,} of "
        f"{examples:,} examples come back with a label and a rationale (every failed line is "
        "listed in the report)"
    )


def rationale_mixture(mixture: float, examples: int, *, overridden: bool) -> str:
    """How many rationale tasks the training data holds."""
    source = (
        "the rationale_mixture override" if overridden else Settings.env_name("rationale_mixture")
    )
    return (
        f"rationale mixture {mixture:g}: {source}; the training file holds every example's label "
        f"task and about {round(mixture * examples):,} rationale tasks"
    )


def task_prefixes(label: str, rationale: str, *, overridden: bool) -> str:
    """The task prefixes, and which one evaluation and serving send."""
    source = "the task prefix overrides" if overridden else "Hsieh et al. 2023's (the default)"
    return (
        f"task prefixes {label!r} (label task) and {rationale!r} (rationale task): {source}; "
        "evaluation and serving send the label task's prefix"
    )


def labeling_artifacts(labeled_uri: str, training_uri: str) -> str:
    """Where the labeling run's files go."""
    return (
        f"labeled set {labeled_uri} (with its lineage beside it); the tuning job trains on the "
        f"two-task file {training_uri}, not on the validated copy"
    )


def two_task_tokens(tokens: int, training_examples: int) -> str:
    """What the tuning estimate counts for a labeling job."""
    return (
        f"tuning tokens {tokens:,} per epoch: the two-task data ({training_examples:,} examples: "
        "label tasks and rationale tasks, with the teacher's answers and rationales assumed at "
        "Distillery's planning sizes)"
    )


def two_task_examples_above(examples: int, maximum: int, model: str) -> str:
    """Refusal: the two-task file would hold more examples than the base model tunes on."""
    return (
        f"the two-task training data would hold {examples:,} examples; {model} tunes on at most "
        f"{maximum:,} (lower rationale_mixture, or upload fewer examples)"
    )


def unlabeled_without_teacher(examples: int) -> str:
    """Refusal: an unlabeled set cannot be tuned on without the teacher's labels."""
    return (
        f"the training set's {examples:,} examples are unlabeled, and rationales=none tunes on "
        "the dataset's own labels: the teacher must label it (set rationales=teacher, the "
        "default), or label it yourself and upload it again"
    )


def rationales_in_distillation() -> str:
    """Refusal: the distillation mode's teacher writes the responses itself."""
    return (
        "override rationales: rationales=teacher labels the training set for supervised tuning; "
        f"this job runs in the distillation mode ({Settings.env_name('tuning_mode')}), whose "
        "teacher writes the responses itself (set tuning_mode=supervised or remove rationales)"
    )


def labeling_key_without_labeling(key: str, *, why: str) -> str:
    """Refusal: a labeling parameter on a job that does not label."""
    return (
        f"override {key} applies only when the teacher labels the training set "
        f"(rationales=teacher); this is {why} (remove the key, or set rationales=teacher)"
    )


def not_a_labeling_teacher(model: str, teachers: Iterable[str]) -> str:
    """Refusal: ``model`` cannot label through batch prediction."""
    return (
        f"override teacher_model: {model} is the distillation mode's teacher; a labeling "
        f"teacher is one of {', '.join(teachers)}"
    )


def over_tuning_budget_with_labeling(
    spent: float, tuning_usd: float, labeling_usd: float, budget: float
) -> str:
    """Refusal: labeling and tuning together would exceed the daily budget."""
    alone = " (the labeling alone exceeds it)" if spent + labeling_usd > budget else ""
    return (
        f"the daily tuning budget would be exceeded: ${spent:,.2f} estimated today + "
        f"${labeling_usd:,.2f} labeling + ${tuning_usd:,.2f} tuning for this job > "
        f"{Settings.env_name('daily_tuning_usd')}={budget:g}{alone}; nothing is spent"
    )
