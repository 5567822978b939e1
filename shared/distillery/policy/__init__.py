"""The launch policy: one LaunchRequest + the deployment's settings → a resolved, explained job.

:func:`resolve` is pure (no I/O). It applies every rule of SPEC.md ("Regions and accelerators",
"Training parameters", "The job request") and the organisation's constraints from
:class:`~distillery.core.settings.Settings` (allowed regions, data residency, required CMEK,
accelerator preference with fallback, concurrency, step and daily-budget limits), and returns a
:class:`Plan`:

- ``spec``: every resolved value (:class:`JobSpec`);
- ``reasons``: one sentence per choice, saying why;
- ``refusals``: every reason the job cannot run (non-empty → REJECTED_BY_POLICY; all are
  collected, the engine never stops at the first);
- ``request_body``: the exact ``pipelineJobs.create`` body, holding only the parameters that apply
  (for the ``gemini`` backend, ``_gemini``: the ``tuningJobs.create`` body);
- ``labeling`` and ``labeling_body``: a gemini job's labeling stage and its
  ``batchPredictionJobs.create`` body, when its teacher labels the training set (else None).

:func:`job_id` derives the deterministic Vertex ``pipelineJobId`` of a request (from the
validated dataset's identity and the request id, never from a plan).

The public surface is re-exported here from private modules, one per seam: ``_resolve`` (the
resolver), ``_overrides`` (a request's overrides, read with the one schema of
:mod:`distillery.overrides`), ``_regions`` (regions, residency, TensorBoard, CMEK), ``_training``
(batch size, steps), ``_budget`` (the cost estimate), ``_names`` (display name, output directory,
job id), ``_body`` (the request body), ``_gemini`` (the gemini backend's plan), ``_labeling`` (its
labeling stage: whether the teacher labels and explains the training set first, the frozen
``LabelingSpec`` and batch body, the two-task data and their cost), ``_explain`` (every sentence)
and ``_model`` (the types).
The distillation facts it applies are :mod:`distillery.facts`'s; the names below that this module
has always exported for them (``ACCELERATORS``, ``CMEK_REGION``, ``DEFAULT_*``, ...) are the facts'
own objects, not copies.
"""

from distillery.facts import (
    ACCELERATORS,
    CHECKPOINT_SELECTION_VALUES,
    CMEK_REGION,
    DEFAULT_CHECKPOINT_SELECTION,
    DEFAULT_ENABLE_EARLY_STOPPING,
    DEFAULT_EVALUATION_INTERVAL,
    DEFAULT_LEARNING_RATE_MULTIPLIER,
    DEFAULT_TRAIN_STEPS,
    DISPLAY_NAME_MAX,
    EVAL_MAX_EXAMPLES,
    EVAL_MIN_EXAMPLES,
    LONG_CONTEXT_BATCH,
    MAX_DATASET_EXAMPLES,
    SHORT_CONTEXT_BATCH,
    TASK_STEP_RANGES,
    TASKS,
    AcceleratorProfile,
)
from distillery.facts import EVAL_ONLY_PARAMETERS as EVAL_PARAMETERS
from distillery.overrides import GEMINI_ONLY_KEYS, OVERRIDABLE_PARAMETERS, PIPELINE_ONLY_KEYS
from distillery.policy._body import build_request_body
from distillery.policy._budget import (
    EVALUATION_PASS_SECONDS,
    PIPELINE_OVERHEAD_HOURS,
    estimate_accelerator_hours,
)
from distillery.policy._gemini import (
    DEFAULT_EPOCH_COUNT,
    ESTIMATED_TOKENS_PER_EXAMPLE,
    build_tuning_body,
)
from distillery.policy._model import GeminiJobSpec, JobSpec, Plan, PolicyUsage
from distillery.policy._names import (
    JOB_ID_HASH_CHARS,
    JOB_ID_PATTERN,
    JOB_ID_PREFIX_MAX,
    JOB_LABEL_KEY,
    MODEL_NAME_SUFFIX,
    default_model_display_name,
    job_id,
    job_label,
)
from distillery.policy._resolve import resolve
from distillery.policy._training import TARGET_EPOCHS, batch_size, choose_train_steps

#: The eval set sizes SPEC allows, (minimum, maximum).
EVAL_EXAMPLES_RANGE: tuple[int, int] = (EVAL_MIN_EXAMPLES, EVAL_MAX_EXAMPLES)

__all__ = [
    "ACCELERATORS",
    "CHECKPOINT_SELECTION_VALUES",
    "CMEK_REGION",
    "DEFAULT_CHECKPOINT_SELECTION",
    "DEFAULT_ENABLE_EARLY_STOPPING",
    "DEFAULT_EPOCH_COUNT",
    "DEFAULT_EVALUATION_INTERVAL",
    "DEFAULT_LEARNING_RATE_MULTIPLIER",
    "DEFAULT_TRAIN_STEPS",
    "DISPLAY_NAME_MAX",
    "ESTIMATED_TOKENS_PER_EXAMPLE",
    "EVALUATION_PASS_SECONDS",
    "EVAL_EXAMPLES_RANGE",
    "EVAL_PARAMETERS",
    "GEMINI_ONLY_KEYS",
    "JOB_ID_HASH_CHARS",
    "JOB_ID_PATTERN",
    "JOB_ID_PREFIX_MAX",
    "JOB_LABEL_KEY",
    "LONG_CONTEXT_BATCH",
    "MAX_DATASET_EXAMPLES",
    "MODEL_NAME_SUFFIX",
    "OVERRIDABLE_PARAMETERS",
    "PIPELINE_ONLY_KEYS",
    "PIPELINE_OVERHEAD_HOURS",
    "SHORT_CONTEXT_BATCH",
    "TARGET_EPOCHS",
    "TASKS",
    "TASK_STEP_RANGES",
    "AcceleratorProfile",
    "GeminiJobSpec",
    "JobSpec",
    "Plan",
    "PolicyUsage",
    "batch_size",
    "build_request_body",
    "build_tuning_body",
    "choose_train_steps",
    "default_model_display_name",
    "estimate_accelerator_hours",
    "job_id",
    "job_label",
    "resolve",
]
