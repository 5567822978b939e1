"""The distillation facts the product is built on: one definition of each, with where it comes from.

The validator (:mod:`distillery.validation`), the override schema (:mod:`distillery.overrides`),
the launch policy (:mod:`distillery.policy`), the settings' defaults
(:mod:`distillery.core.settings`) and the local Vertex AI API (:mod:`distillery.local.emulator`)
read these values; none of them keeps a copy (``tests/unit/test_facts.py`` checks). Each fact
says its source and the date it was read. The sources:

- ``[distill-docs]``: Google's Vertex AI documentation of distilling step-by-step, "Create a
  distilled text model" (cloud.google.com/vertex-ai/generative-ai/docs/models/distill-text-models),
  as restated in the project's SPEC.md. The page describes the PaLM 2 pipeline that Google shut
  down on 2025-04-09; its contract is kept and emulated. Read 2026-12-01.
- ``[aiplatform-2.7.0]``: google-cloud-aiplatform 2.7.0 (pinned in pyproject.toml),
  ``vertexai/language_models/_distillation.py`` (the template URI and the parameters the SDK
  sends) and the ``PipelineJob`` REST resource of ``google.cloud.aiplatform_v1``. Read 2026-12-01.
- ``[vertex-rest]``: the Vertex AI REST reference (projects.locations.pipelineJobs, labels,
  Cloud KMS and TensorBoard resource names). Read 2026-12-01.

Pure data: no I/O, nothing imported beyond the standard library, so every layer may read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# --- Regions and accelerators [distill-docs] "Regions and accelerators", read 2026-12-01 ---------

#: Pipeline job regions that support distillation; the model upload region (``location``) must be
#: one of them too.
SUPPORTED_REGIONS: tuple[str, ...] = (
    "us-central1",
    "europe-west4",
    "asia-southeast1",
    "us-west1",
    "europe-west3",
    "europe-west2",
    "asia-northeast1",
    "us-east4",
    "us-west4",
    "northamerica-northeast1",
    "europe-west9",
    "europe-west1",
    "asia-northeast3",
)


@dataclass(frozen=True)
class AcceleratorProfile:
    """Where and on what one accelerator type tunes."""

    name: str
    #: The region tuning computes in, whatever the pipeline region.
    tuning_region: str
    count: int
    description: str
    cmek_supported: bool
    #: A planning estimate of one training step's wall time (not a documented fact: the policy's
    #: budget check is its only reader).
    seconds_per_step: float


#: The accelerator types, the first being the documented default (``accelerator_type``).
ACCELERATORS: dict[str, AcceleratorProfile] = {
    "GPU": AcceleratorProfile("GPU", "us-central1", 8, "8 x NVIDIA A100 80 GB", True, 10.0),
    "TPU": AcceleratorProfile("TPU", "europe-west4", 64, "64 TPU v3 cores", False, 5.0),
}
ACCELERATOR_TYPES: tuple[str, ...] = tuple(ACCELERATORS)
DEFAULT_ACCELERATOR = "GPU"
#: Where tuning runs, by accelerator type.
TUNING_REGIONS: dict[str, str] = {name: a.tuning_region for name, a in ACCELERATORS.items()}

#: The only region where a customer-managed encryption key can be used: with CMEK, the pipeline,
#: the model upload and tuning (so the GPU) must all be here. Elsewhere Google manages the key.
CMEK_REGION = "us-central1"

# --- Training parameters [distill-docs] "Training parameters", read 2026-12-01 -------------------

DEFAULT_TRAIN_STEPS = 300
DEFAULT_LEARNING_RATE_MULTIPLIER = 1.0
#: The seed documentation says 20 steps; the v1.0.0 template's own default is 100. Distillery
#: follows the documentation the product was specified from (and always sends the value).
DEFAULT_EVALUATION_INTERVAL = 20
DEFAULT_ENABLE_EARLY_STOPPING = True
#: ``enable_checkpoint_selection`` is a string parameter of the template.
DEFAULT_CHECKPOINT_SELECTION = "default"
CHECKPOINT_SELECTION_VALUES: tuple[str, ...] = ("default", "true", "false")

#: Batch size by tuning region for 8k-context students (text-bison@002 and kin).
SHORT_CONTEXT_BATCH: dict[str, int] = {"us-central1": 8, "europe-west4": 24}
#: Batch size of 32k-context students, in every tuning region.
LONG_CONTEXT_BATCH = 8


def batch_size(tuning_region: str, *, long_context: bool) -> int:
    """The documented batch size of a student tuned in ``tuning_region``.

    Raises:
        KeyError: ``tuning_region`` is not a region tuning runs in (see :data:`TUNING_REGIONS`).
    """
    if long_context:
        return LONG_CONTEXT_BATCH
    return SHORT_CONTEXT_BATCH[tuning_region]


#: Parameters that only apply with an evaluation set ("no eval parameters without eval data").
EVAL_ONLY_PARAMETERS: tuple[str, ...] = (
    "evaluation_interval",
    "enable_early_stopping",
    "enable_checkpoint_selection",
)

#: The tasks the documentation gives recommendations for, with the recommended ``train_steps``.
TASK_STEP_RANGES: dict[str, tuple[int, int]] = {
    "classification": (200, 1000),
    "summarization": (1000, 1500),
    "extractive_qa": (200, 800),
}
#: The ``task`` values a config may name ("other": no recommendation).
TASKS: tuple[str, ...] = (*TASK_STEP_RANGES, "other")

# --- Datasets [distill-docs] "Dataset format", read 2026-12-01 -----------------------------------

MAX_DATASET_EXAMPLES = 10_000
EVAL_MIN_EXAMPLES = 10
EVAL_MAX_EXAMPLES = 250
#: Longer fields are truncated by the service (so: a warning, not an error).
MAX_INPUT_TOKENS = 7_168
MAX_OUTPUT_TOKENS = 1_024
#: "A few hundred" labeled examples and "more than 1,000" unlabeled ones are recommended.
RECOMMENDED_MIN_LABELED = 100
RECOMMENDED_MIN_UNLABELED = 1_000

# --- Models [distill-docs] "Models", read 2026-12-01 ---------------------------------------------

DEFAULT_TEACHER_MODEL = "text-unicorn@001"
DEFAULT_STUDENT_MODEL = "text-bison@002"
#: Students with a 32k context (batch size 8 everywhere).
DEFAULT_LONG_CONTEXT_STUDENTS: tuple[str, ...] = ("text-bison-32k@002",)

# --- The pipeline template [aiplatform-2.7.0], read 2026-12-01 -----------------------------------

#: ``_DISTILLATION_PIPELINE_URI`` of vertexai/language_models/_distillation.py.
TEMPLATE_URI = "https://us-kfp.pkg.dev/ml-pipeline/distillation/distillation/v1.0.0"

# The template's input parameters: its ``root.inputDefinitions.parameters`` as
# googleapis/python-aiplatform's tests/unit/aiplatform/test_language_models.py holds them
# (``_TEST_DISTILLATION_PIPELINE_SPEC``: each ``parameterType``, ``defaultValue`` and
# ``isOptional``), and what [aiplatform-2.7.0]'s _distillation.py sends and documents (e.g.
# ``max_context_length`` "can be either '8k' or '32k'"). Read 2026-12-01.

#: KFP parameter types.
STRING = "STRING"
NUMBER_INTEGER = "NUMBER_INTEGER"
NUMBER_DOUBLE = "NUMBER_DOUBLE"
BOOLEAN = "BOOLEAN"

#: The template's default ``model_display_name``.
DEFAULT_MODEL_DISPLAY_NAME = "distilled-student-model"
#: The template's own default ``evaluation_interval``; the seed documentation (SPEC.md, "Training
#: parameters") says 20 steps, and the emulator follows the seed
#: (:data:`DEFAULT_EVALUATION_INTERVAL`), as the product does.
TEMPLATE_DEFAULT_EVALUATION_INTERVAL = 100
#: The values of ``max_context_length`` the SDK documents ("" is the template's default: the
#: student's own context size).
MAX_CONTEXT_LENGTHS: tuple[str, ...] = ("8k", "32k")
#: The ``max_context_length`` whose students tune with the long-context batch size.
LONG_CONTEXT_LENGTH = "32k"


@dataclass(frozen=True)
class TemplateParameter:
    """One input parameter of the template."""

    kind: str
    #: The template's ``defaultValue``; None: the parameter is required.
    default: Any = None

    @property
    def required(self) -> bool:
        """Whether a request must set it (the template gives it no default)."""
        return self.default is None

    @property
    def unset(self) -> Any:
        """The value that means "not given": the template's ``""`` default of optional strings
        (``encryption_spec_key_name: ""`` is Google-managed encryption); None for the others."""
        return "" if self.kind == STRING and self.default == "" else None


#: Every input parameter of the template (``root.inputDefinitions.parameters``), with its KFP
#: ``parameterType`` and ``defaultValue``; one without a default is required.
TEMPLATE_PARAMETERS: dict[str, TemplateParameter] = {
    "accelerator_type": TemplateParameter(STRING, DEFAULT_ACCELERATOR),
    "api_endpoint": TemplateParameter(STRING, "aiplatform.googleapis.com/ui"),
    "dataset_uri": TemplateParameter(STRING),
    "enable_checkpoint_selection": TemplateParameter(STRING, DEFAULT_CHECKPOINT_SELECTION),
    "enable_early_stopping": TemplateParameter(BOOLEAN, DEFAULT_ENABLE_EARLY_STOPPING),
    "encryption_spec_key_name": TemplateParameter(STRING, ""),
    "evaluation_data_uri": TemplateParameter(STRING, ""),
    # The template's default is TEMPLATE_DEFAULT_EVALUATION_INTERVAL (100); the seed's is 20.
    "evaluation_interval": TemplateParameter(NUMBER_INTEGER, DEFAULT_EVALUATION_INTERVAL),
    "evaluation_output_root_dir": TemplateParameter(STRING, ""),
    "learning_rate_multiplier": TemplateParameter(NUMBER_DOUBLE, DEFAULT_LEARNING_RATE_MULTIPLIER),
    # "": the pipeline's region (SPEC.md: the upload region defaults to the pipeline region).
    "location": TemplateParameter(STRING, ""),
    "max_context_length": TemplateParameter(STRING, ""),
    "model_display_name": TemplateParameter(STRING, DEFAULT_MODEL_DISPLAY_NAME),
    "project": TemplateParameter(STRING),
    "student_model_reference": TemplateParameter(STRING, DEFAULT_STUDENT_MODEL),
    "teacher_model_reference": TemplateParameter(STRING, DEFAULT_TEACHER_MODEL),
    "temperature": TemplateParameter(NUMBER_DOUBLE, 0.0),
    "tensorboard_resource_id": TemplateParameter(STRING, ""),
    "tpu_training_skip_cmek": TemplateParameter(BOOLEAN, False),
    "train_steps": TemplateParameter(NUMBER_INTEGER, DEFAULT_TRAIN_STEPS),
    "version": TemplateParameter(STRING, "latest"),
}
REQUIRED_PARAMETERS: tuple[str, ...] = tuple(
    name for name, parameter in TEMPLATE_PARAMETERS.items() if parameter.required
)


# --- Resource names and limits [vertex-rest], read 2026-12-01 ------------------------------------

#: A client-chosen ``pipelineJobId``.
PIPELINE_JOB_ID_PATTERN = re.compile(r"[a-z][-a-z0-9]{0,127}")
#: ``displayName`` of a PipelineJob, and a model's display name.
DISPLAY_NAME_MAX = 128
#: Label keys and values.
LABEL_MAX = 64
#: ``tensorboard_resource_id``: a TensorBoard instance (in the pipeline's region).
TENSORBOARD_PATTERN = re.compile(
    r"projects/[^/\s]+/locations/(?P<location>[^/\s]+)/tensorboards/[^/\s]+"
)
#: ``encryption_spec_key_name`` / ``encryptionSpec.kmsKeyName``: a Cloud KMS key.
KMS_KEY_PATTERN = re.compile(
    r"projects/[^/\s]+/locations/(?P<location>[^/\s]+)/keyRings/[^/\s]+/cryptoKeys/[^/\s]+"
)


# --- Gemini supervised tuning: the backend that runs on Google Cloud today -----------------------
#
# PaLM 2 and the template above were shut down on 2025-04-09; Gemini supervised tuning
# (``tuningJobs``) is their successor. Sources, all read 2026-12-01 through the project's stored
# copies of Google's documentation:
#
# - ``[sft-about]``: "About supervised fine-tuning for Gemini models", section "Limitations"
#   (cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning; the full
#   per-model tables were read in its zh-CN rendering, last updated 2025-09-04).
# - ``[sft-prepare]``: "Prepare supervised fine-tuning data for Gemini models"
#   (cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning-prepare).
# - ``[sft-regions]``: "Supervised fine-tuning regions"
#   (cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning-region-settings).
# - ``[tuning-api]``: the Tuning API reference
#   (docs.cloud.google.com/gemini-enterprise-agent-platform/reference/models/tuning) and the
#   ``EncryptionSpec`` REST reference (docs.cloud.google.com/vertex-ai/docs/reference/rest/v1/
#   EncryptionSpec).
# - ``[genai-sdk]``: the google-genai SDK's tuning guide (its example tunes ``gemini-2.5-flash``).
# - ``[aiplatform-2.7.0]``: ``google.cloud.aiplatform_v1.types.SupervisedHyperParameters``.
#
# The newest Tuning API reference also lists Gemini 3.5 Flash, Gemini 3.5 Flash-Lite and Gemini
# 3.1 Flash-Lite as tunable, but the stored copies cut its model list and limits tables short, so
# their per-model limits could not be read: they are left out until they can be recorded here.

#: The ``AdapterSize`` enum of ``SupervisedHyperParameters`` [aiplatform-2.7.0], by value name,
#: with the adapter size (rank) each names.
ADAPTER_SIZES: dict[str, int] = {
    "ADAPTER_SIZE_ONE": 1,
    "ADAPTER_SIZE_TWO": 2,
    "ADAPTER_SIZE_FOUR": 4,
    "ADAPTER_SIZE_EIGHT": 8,
    "ADAPTER_SIZE_SIXTEEN": 16,
    "ADAPTER_SIZE_THIRTY_TWO": 32,
}

#: The training-price figures below could not be found in the stored copies of Google's pricing
#: page (searched 2026-12-01): they are the per-1M-training-token list prices of the Vertex AI
#: pricing page's "Tuning" rows as last read before (2025), kept as a planning estimate only.
#: Anything that shows a cost must say it is an estimate while this is False.
GEMINI_TUNING_PRICES_VERIFIED = False
#: Where the prices would be checked (cloud.google.com/vertex-ai/generative-ai/pricing).
GEMINI_TUNING_PRICES_SOURCE = "cloud.google.com/vertex-ai/generative-ai/pricing (Tuning)"

#: "1GB for JSONL" [sft-about], read as 10^9 bytes: the smaller reading, so a file this accepts
#: fits either way.
GEMINI_MAX_DATASET_BYTES = 1_000_000_000


@dataclass(frozen=True)
class GeminiTuningModel:
    """One Gemini base model that supports supervised tuning, with its documented limits."""

    #: The ``baseModel`` of a TuningJob.
    model_id: str
    name: str
    #: "Maximum input and output tokens per training example" [sft-about].
    max_example_tokens: int
    #: "Maximum training dataset size": text-only examples [sft-about].
    max_training_examples: int
    #: "Maximum validation dataset size" [sft-about].
    max_validation_examples: int
    #: "Maximum training dataset file size" for JSONL [sft-about].
    max_dataset_bytes: int
    #: The ``adapterSize`` values [sft-about] allows, as :data:`ADAPTER_SIZES` names.
    adapter_sizes: tuple[str, ...]
    #: USD per 1M training tokens; see :data:`GEMINI_TUNING_PRICES_VERIFIED`.
    usd_per_million_training_tokens: float


_ADAPTERS_TO_16: tuple[str, ...] = tuple(name for name, size in ADAPTER_SIZES.items() if size <= 16)
_ADAPTERS_TO_8: tuple[str, ...] = tuple(name for name, size in ADAPTER_SIZES.items() if size <= 8)

#: The tunable base models [sft-about] "Limitations": every one allows 131,072 tokens per
#: training example, 1M text-only training examples, 5,000 validation examples and a 1 GB JSONL
#: file; 2.5 Flash and Flash-Lite take adapter sizes up to 16, the others up to 8. The 2.0 ids
#: carry the ``-001`` version the tuning samples name; 2.5 ids are the SDK guide's [genai-sdk].
GEMINI_TUNING_MODELS: dict[str, GeminiTuningModel] = {
    model.model_id: model
    for model in (
        GeminiTuningModel(
            "gemini-2.5-flash",
            "Gemini 2.5 Flash",
            131_072,
            1_000_000,
            5_000,
            GEMINI_MAX_DATASET_BYTES,
            _ADAPTERS_TO_16,
            5.0,
        ),
        GeminiTuningModel(
            "gemini-2.5-flash-lite",
            "Gemini 2.5 Flash-Lite",
            131_072,
            1_000_000,
            5_000,
            GEMINI_MAX_DATASET_BYTES,
            _ADAPTERS_TO_16,
            1.5,
        ),
        GeminiTuningModel(
            "gemini-2.5-pro",
            "Gemini 2.5 Pro",
            131_072,
            1_000_000,
            5_000,
            GEMINI_MAX_DATASET_BYTES,
            _ADAPTERS_TO_8,
            25.0,
        ),
        GeminiTuningModel(
            "gemini-2.0-flash-001",
            "Gemini 2.0 Flash",
            131_072,
            1_000_000,
            5_000,
            GEMINI_MAX_DATASET_BYTES,
            _ADAPTERS_TO_8,
            3.0,
        ),
        GeminiTuningModel(
            "gemini-2.0-flash-lite-001",
            "Gemini 2.0 Flash-Lite",
            131_072,
            1_000_000,
            5_000,
            GEMINI_MAX_DATASET_BYTES,
            _ADAPTERS_TO_8,
            1.0,
        ),
    )
}
#: The default base model: the balanced one, first in [sft-about]'s tables and the one
#: [genai-sdk]'s tuning example tunes.
DEFAULT_GEMINI_BASE_MODEL = "gemini-2.5-flash"


def gemini_tuning_model(model_id: str) -> GeminiTuningModel:
    """The tunable base model ``model_id`` (a ``publishers/google/models/`` prefix is allowed).

    Raises:
        KeyError: ``model_id`` is not one of :data:`GEMINI_TUNING_MODELS`; the message lists them.
    """
    short = model_id.removeprefix("publishers/google/models/")
    try:
        return GEMINI_TUNING_MODELS[short]
    except KeyError:
        known = ", ".join(GEMINI_TUNING_MODELS)
        raise KeyError(
            f"{model_id!r} is not a Gemini base model that supports supervised tuning ({known})"
        ) from None


def gemini_tuning_cost_usd(model_id: str, dataset_tokens: int, epochs: int) -> float:
    """Planning cost of tuning ``model_id`` on ``dataset_tokens`` for ``epochs`` epochs, in USD.

    Billed training tokens are the dataset's tokens times the epochs; the price is an estimate
    while :data:`GEMINI_TUNING_PRICES_VERIFIED` is False.

    Raises:
        KeyError: ``model_id`` is not a tunable base model.
        ValueError: ``dataset_tokens`` is negative or ``epochs`` is not positive.
    """
    if dataset_tokens < 0:
        raise ValueError(f"dataset_tokens must be at least 0, not {dataset_tokens}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}")
    price = gemini_tuning_model(model_id).usd_per_million_training_tokens
    return dataset_tokens * epochs * price / 1_000_000


#: Regions a supervised tuning job may run in [sft-regions]: the job, the transformed dataset
#: and the tuned model live there (computation may be offloaded within the US or the EU). The
#: stored copy of the list is cut off after "southamerica-east1, us-": of the US regions only
#: us-central1, which the same page uses in its examples, is recorded.
GEMINI_TUNING_REGIONS: tuple[str, ...] = (
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast3",
    "asia-south1",
    "asia-southeast1",
    "australia-southeast1",
    "europe-central2",
    "europe-north1",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "me-central1",
    "me-central2",
    "me-west1",
    "northamerica-northeast1",
    "southamerica-east1",
    "us-central1",
)
DEFAULT_GEMINI_TUNING_REGION = "us-central1"
# --- Gemini distillation (v1beta1 ``distillationSpec``) -------------------------------------------
#
# Sources, read 2026-12-02:
#
# - ``[distill-service]``: "Gemini Distillation Service"
#   (docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/distillation): the
#   teacher writes responses and raw thoughts from a prompt dataset; "supported for Distillation
#   during early access": teacher gemini-3.1-pro, student gemini-2.5-flash.
# - ``[aiplatform-2.7.0]``: ``google.cloud.aiplatform_v1beta1.types.DistillationSpec`` and
#   ``DistillationHyperParameters``: ``base_teacher_model`` | ``tuned_teacher_model_source`` (a
#   oneof), ``training_dataset_uri``, ``validation_dataset_uri``, ``hyper_parameters
#   {epoch_count, learning_rate_multiplier, adapter_size}``, ``student_model`` and
#   ``pipeline_root_directory``. It has no ``prompt_dataset_uri``: the newer references (the
#   google-genai ``DistillationSpec``) add ``promptDatasetUri`` and mark ``trainingDatasetUri``,
#   ``studentModel`` and ``pipelineRootDirectory`` deprecated (the student is ``baseModel``), but
#   the installed client cannot send a field its message lacks.
# - SPEC.md, "The successor on Google Cloud today": early access (allowlisted projects),
#   us-central1 only.

#: ``distillationSpec`` (v1beta1) is early access for allowlisted projects, in this region only
#: (SPEC.md, "The successor on Google Cloud today").
GEMINI_DISTILLATION_REGION = "us-central1"
#: The base teachers (``baseTeacherModel``) [distill-service] lists for early access: one.
GEMINI_DISTILLATION_TEACHERS: tuple[str, ...] = ("gemini-3.1-pro",)
DEFAULT_GEMINI_DISTILLATION_TEACHER = "gemini-3.1-pro"
#: The students (``baseModel``) [distill-service] lists for early access: one of
#: :data:`GEMINI_TUNING_MODELS`.
GEMINI_DISTILLATION_STUDENTS: tuple[str, ...] = ("gemini-2.5-flash",)
#: The tuning modes of the gemini backend: supervised tuning (v1 ``supervisedTuningSpec``, the
#: dataset holds the answers) and distillation (v1beta1 ``distillationSpec``, prompts only).
GEMINI_TUNING_MODES: tuple[str, ...] = ("supervised", "distillation")
DEFAULT_GEMINI_TUNING_MODE = "supervised"
#: The Vertex AI API version each mode's tuning job is created (and read, listed, cancelled)
#: through: ``distillationSpec`` exists in v1beta1 only [aiplatform-2.7.0].
GEMINI_TUNING_API_VERSIONS: dict[str, str] = {"supervised": "v1", "distillation": "v1beta1"}

#: A TuningJob takes ``encryptionSpec.kmsKeyName`` [tuning-api]; "the Cloud KMS key must be in
#: the same region as the resource", so with CMEK the key's location is the tuning region. The
#: seed's us-central1-only rule (:data:`CMEK_REGION`) is the PaLM pipeline's, not this one's.
GEMINI_CMEK_SUPPORTED = True

#: ``epochCount`` and ``learningRateMultiplier`` are optional: unset, Vertex AI picks the epochs
#: from the dataset size and multiplies the default learning rate by 1.0 [tuning-api]. No upper
#: bound of either is documented in the stored copies: only these lower bounds are facts (an
#: epoch count is a count of passes; a multiplier of the learning rate must be positive).
GEMINI_MIN_EPOCH_COUNT = 1
GEMINI_DEFAULT_LEARNING_RATE_MULTIPLIER = 1.0

#: "For best results, we recommend that you start with 100 examples" [sft-prepare].
GEMINI_RECOMMENDED_MIN_EXAMPLES = 100
#: The roles of a ``contents`` turn [sft-prepare]: the user's prompt and the model's answer.
GEMINI_USER_ROLE = "user"
GEMINI_MODEL_ROLE = "model"

# --- Gemini batch prediction: the teacher that labels and explains ------------------------------
#
# Sources, read 2026-12-02 through the project's stored copies:
#
# - ``[batch-gemini]``: Google's "Batch prediction" / "Batch text generation" page for Gemini
#   (cloud.google.com/vertex-ai/generative-ai/docs/multimodal/batch-prediction-gemini): "Batch
#   requests for Gemini models are discounted 50% from standard requests."
# - ``[batch-gcs]``: "Batch inference from Cloud Storage"
#   (cloud.google.com/vertex-ai/generative-ai/docs/multimodal/batch-prediction-from-cloud-storage):
#   one JSONL file of ``{"request": GenerateContentRequest}`` lines in; ``model`` is
#   ``publishers/google/models/MODEL`` (its example: ``gemini-2.5-flash``) or a tuned model;
#   ``instancesFormat`` and ``predictionsFormat`` ``jsonl``; the answers are written under the
#   job's ``outputInfo.gcsOutputDirectory`` (a ``prediction-model-TIME`` directory below the
#   ``outputUriPrefix``) as ``predictions.jsonl``, one line per request, whose ``response`` is
#   set on success and whose ``status`` holds the error otherwise.
# - Online token prices: Google's pricing page (cloud.google.com/vertex-ai/generative-ai/pricing)
#   is not among the stored copies; the figures below agree across several third-party
#   restatements of it (2025-2026), so they are recorded as unverified.

#: Batch prediction costs this fraction of the online price of the same tokens [batch-gemini].
GEMINI_BATCH_PRICE_FRACTION = 0.5
#: The per-model online prices below were not read on Google's own pricing page: anything that
#: shows a teacher cost must say it is an estimate while this is False.
GEMINI_TEACHER_PRICES_VERIFIED = False
#: Where the prices would be checked.
GEMINI_TEACHER_PRICES_SOURCE = "cloud.google.com/vertex-ai/generative-ai/pricing (Gemini)"
#: The ``outputUriPrefix`` gets a directory of this prefix per job [batch-gcs].
GEMINI_BATCH_OUTPUT_DIRECTORY_PREFIX = "prediction-model-"
#: The file of the output directory that holds the answers [batch-gcs].
GEMINI_BATCH_PREDICTIONS_FILE = "predictions.jsonl"
#: The ``instancesFormat`` and ``predictionsFormat`` of a Cloud Storage batch job [batch-gcs].
GEMINI_BATCH_FORMAT = "jsonl"


@dataclass(frozen=True)
class GeminiTeacherModel:
    """A Gemini model that can label a dataset through batch prediction, with its online price.

    Prices are USD per 1M tokens for prompts up to :attr:`long_context_tokens` tokens (Gemini
    2.5 Pro costs more above 200K; no training prompt comes near that); see
    :data:`GEMINI_TEACHER_PRICES_VERIFIED`.
    """

    #: The model id of ``publishers/google/models/MODEL``.
    model_id: str
    name: str
    usd_per_million_input_tokens: float
    usd_per_million_output_tokens: float
    long_context_tokens: int = 200_000

    @property
    def resource_name(self) -> str:
        """``publishers/google/models/MODEL``, the ``model`` of a batch prediction job."""
        return f"publishers/google/models/{self.model_id}"


#: The teachers, the strongest first. Online prices per 1M tokens (input, output; output
#: includes thinking tokens): 2.5 Pro 1.25/10.00, 2.5 Flash 0.30/2.50, 2.5 Flash-Lite 0.10/0.40.
GEMINI_TEACHER_MODELS: dict[str, GeminiTeacherModel] = {
    model.model_id: model
    for model in (
        GeminiTeacherModel("gemini-2.5-pro", "Gemini 2.5 Pro", 1.25, 10.0),
        GeminiTeacherModel("gemini-2.5-flash", "Gemini 2.5 Flash", 0.30, 2.50),
        GeminiTeacherModel("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 0.10, 0.40),
    )
}
#: The default teacher: a Pro model (the issue's choice: the strongest teacher, at batch price).
DEFAULT_GEMINI_TEACHER_MODEL = "gemini-2.5-pro"


def gemini_teacher_model(model_id: str) -> GeminiTeacherModel:
    """The teacher ``model_id`` (a ``publishers/google/models/`` prefix is allowed).

    Raises:
        KeyError: ``model_id`` is not one of :data:`GEMINI_TEACHER_MODELS`; the message lists them.
    """
    short = model_id.removeprefix("publishers/google/models/")
    try:
        return GEMINI_TEACHER_MODELS[short]
    except KeyError:
        known = ", ".join(GEMINI_TEACHER_MODELS)
        raise KeyError(f"{model_id!r} is not a Gemini teacher model ({known})") from None


def gemini_batch_cost_usd(model_id: str, input_tokens: int, output_tokens: int) -> float:
    """Planning cost of a batch prediction job of ``model_id`` over these tokens, in USD: the
    online price times :data:`GEMINI_BATCH_PRICE_FRACTION` (an estimate while
    :data:`GEMINI_TEACHER_PRICES_VERIFIED` is False).

    Raises:
        KeyError: ``model_id`` is not a teacher model.
        ValueError: a token count is negative.
    """
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError(f"token counts must be at least 0, not {input_tokens} and {output_tokens}")
    model = gemini_teacher_model(model_id)
    online = (
        input_tokens * model.usd_per_million_input_tokens
        + output_tokens * model.usd_per_million_output_tokens
    ) / 1_000_000
    return online * GEMINI_BATCH_PRICE_FRACTION


# --- Planning assumptions of a labeling run (Distillery's own, not Google's) ---------------------
#
# A batch job is billed by the tokens the teacher reads and writes. What it reads is known before
# it runs (the prompts and the instruction, estimated like every token count here); what it
# writes is not, so the plan assumes the figures below. They are Distillery's planning
# assumptions, not documented facts: the stored copies of Google's Vertex AI pages give no
# per-request output size, and do not say whether ``maxOutputTokens`` bounds a 2.5 model's
# thinking. What is known: Gemini 2.5 Pro always thinks (its thinking cannot be turned off) and
# Google's pricing lists output prices "including thinking tokens", so thinking is billed as
# output (unverified, as the prices are: :data:`GEMINI_TEACHER_PRICES_VERIFIED`).

#: The answer assumed per example where the teacher writes it (a label, a short span).
ESTIMATED_ANSWER_TOKENS = 32
#: The rationale assumed per example: a few sentences of step-by-step reasoning.
ESTIMATED_RATIONALE_TOKENS = 224
#: The visible output assumed per example: the rationale and the answer.
ESTIMATED_RATIONALE_OUTPUT_TOKENS = ESTIMATED_ANSWER_TOKENS + ESTIMATED_RATIONALE_TOKENS
#: The thinking tokens assumed per example, by teacher (billed as output). Flash-Lite does not
#: think unless asked to; the requests ask for no thinking budget.
ESTIMATED_THINKING_TOKENS: dict[str, int] = {
    "gemini-2.5-pro": 768,
    "gemini-2.5-flash": 512,
    "gemini-2.5-flash-lite": 0,
}


def estimated_teacher_output_tokens(model_id: str) -> int:
    """The output tokens a labeling plan assumes per example for teacher ``model_id``: the
    visible rationale and answer plus its thinking (a planning assumption, see above).

    Raises:
        KeyError: ``model_id`` is not a teacher model.
    """
    model = gemini_teacher_model(model_id)
    return ESTIMATED_RATIONALE_OUTPUT_TOKENS + ESTIMATED_THINKING_TOKENS.get(model.model_id, 0)
