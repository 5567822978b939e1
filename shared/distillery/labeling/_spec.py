"""What a labeling run is: the frozen spec a job records, the teacher's instruction, the places
its files go, and the ``batchPredictionJobs.create`` body.

A gemini job whose training set is unlabeled, or labeled without rationales when the job asks
for them (``rationales: teacher``), goes through LABELING before its tuning job is created: one
batch prediction job has the teacher answer every prompt with a rationale and then the answer.
The launcher freezes a :class:`LabelingSpec` (and the body of :func:`batch_job_body`) in the job
record when it decides the job, as it freezes the tuning body: a redelivery never re-resolves it.

The files of one job's labeling live under ``<validated prefix>labeled/<job_id>/``, beside the
validated copies (never under the watched prefix): the teacher's request lines, the batch job's
output directory, the labeled set (prompt, label, rationale, and where each came from), its
lineage, and the two-task training file the tuning job trains on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from distillery import facts

#: ``labels_and_rationales``: the training set is unlabeled, the teacher writes both;
#: ``rationales``: the user's labels are kept and the teacher adds a rationale for each.
LabelingMode = Literal["labels_and_rationales", "rationales"]
LABELING_MODES: tuple[str, ...] = get_args(LabelingMode)

#: The task prefixes of Hsieh et al. 2023 (SPEC.md, "The method"): the label task's prompt is
#: ``predict: <prompt>`` (what evaluation and serving send), the rationale task's
#: ``explain: <prompt>``.
DEFAULT_LABEL_TASK_PREFIX = "predict: "
DEFAULT_RATIONALE_TASK_PREFIX = "explain: "

#: The markers the teacher is told to answer with, and the parser reads.
RATIONALE_MARKER = "Rationale:"
ANSWER_MARKER = "Answer:"

#: The label the teacher's request lines carry their line number in (the output is matched to
#: the input by it: the service promises no order of the output lines).
LINE_LABEL_KEY = "distillery-line"

#: Bump when the instruction's words change (the hash changes with them anyway).
INSTRUCTION_VERSION = 1

#: The system instruction of every teacher request: think step by step, then give the answer,
#: in a form Distillery parses (``Rationale: ...`` then a last line ``Answer: ...``).
STEP_BY_STEP_INSTRUCTION = (
    "You are labeling training data for a smaller model. Solve the user's task. First explain, "
    "step by step and in a few sentences, how the answer follows from the input. Then give the "
    "answer exactly as the task asks for it, with nothing else on its line. Reply in exactly "
    f"this form:\n{RATIONALE_MARKER} <your step-by-step reasoning>\n{ANSWER_MARKER} <the answer>"
)

#: Added to the system instruction in the ``rationales`` mode (``{label}`` is the user's label):
#: the teacher explains the given answer. It goes in the instruction, not the user's turn, so the
#: prompt the teacher reads is the training prompt unchanged.
GIVEN_ANSWER_HINT = (
    "\nThe correct answer to this task is given: {label}\nExplain step by step why it is "
    f"correct, then repeat it exactly after {ANSWER_MARKER!r}."
)


def instruction_sha256(mode: str = "labels_and_rationales") -> str:
    """The SHA-256 of what the teacher is told in ``mode`` (the instruction, and in the
    ``rationales`` mode the hint's template), for lineage."""
    told = STEP_BY_STEP_INSTRUCTION
    if mode == "rationales":
        told += GIVEN_ANSWER_HINT
    return hashlib.sha256(told.encode()).hexdigest()


@dataclass(frozen=True)
class LabelingPaths:
    """Where one job's labeling files go (``gs://`` URIs)."""

    #: The teacher's request lines (the batch job's input).
    input_uri: str
    #: The batch job's ``outputUriPrefix`` (the service adds ``prediction-model-<time>/``).
    output_prefix: str
    #: The labeled set: one JSON object a line (see the labeling package's docs).
    labeled_uri: str
    #: The lineage of the labeled set (teacher, instruction hash, batch job, time, counts).
    lineage_uri: str
    #: The two-task ``contents`` file the tuning job trains on.
    training_uri: str


def labeling_paths(bucket: str, validated_prefix: str, job_id: str) -> LabelingPaths:
    """The places of job ``job_id``'s labeling files in ``bucket``."""
    base = f"gs://{bucket}/{validated_prefix}labeled/{job_id}/"
    return LabelingPaths(
        input_uri=f"{base}teacher-requests.jsonl",
        output_prefix=f"{base}teacher-output",
        labeled_uri=f"{base}labeled.jsonl",
        lineage_uri=f"{base}lineage.json",
        training_uri=f"{base}train.jsonl",
    )


@dataclass(frozen=True)
class LabelingSpec:
    """Every resolved value of one job's labeling stage (frozen in ``jobs/{job_id}.labeling``)."""

    mode: str
    #: The teacher's model id (``gemini-2.5-pro``), one of :data:`facts.GEMINI_TEACHER_MODELS`.
    teacher_model: str
    #: Where the batch prediction job runs (the tuning region).
    location: str
    #: The validated copy the prompts (and, in the ``rationales`` mode, the labels) come from.
    source_uri: str
    source_examples: int
    input_uri: str
    output_prefix: str
    labeled_uri: str
    lineage_uri: str
    training_uri: str
    instruction_sha256: str
    instruction_version: int
    #: The job goes on only if at least this fraction of the examples came back labeled (with
    #: a rationale); fewer, and it is FAILED with every failed line listed.
    min_labeled_fraction: float
    #: The fraction of the labeled examples that also give a rationale task (1.0: every one).
    rationale_mixture: float
    label_task_prefix: str
    rationale_task_prefix: str
    #: Planning estimates of the batch job (input and output tokens, USD at batch price).
    estimated_input_tokens: int
    estimated_output_tokens: int
    estimated_cost_usd: float
    #: The label of the batch job carrying the job id (adoption after a crash).
    job_label: str
    #: The teacher's ``generationConfig.maxOutputTokens``.
    max_output_tokens: int = 1024

    def to_dict(self) -> dict[str, Any]:
        """The record's form (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelingSpec:
        """The spec a record holds (fields it does not know are ignored)."""
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def teacher(self) -> facts.GeminiTeacherModel:
        return facts.gemini_teacher_model(self.teacher_model)


def batch_job_body(spec: LabelingSpec, *, display_name: str, label_key: str) -> dict[str, Any]:
    """The REST ``BatchPredictionJob`` of ``spec``'s labeling run (``batchPredictionJobs.create``).

    Shape: ``google.cloud.aiplatform_v1.types.BatchPredictionJob`` (``model``, ``inputConfig``
    with ``instancesFormat`` and ``gcsSource.uris``, ``outputConfig`` with ``predictionsFormat``
    and ``gcsDestination.outputUriPrefix``, ``labels``), as "Batch inference from Cloud Storage"
    documents it for Gemini.
    """
    return {
        "displayName": display_name,
        "model": spec.teacher.resource_name,
        "inputConfig": {
            "instancesFormat": facts.GEMINI_BATCH_FORMAT,
            "gcsSource": {"uris": [spec.input_uri]},
        },
        "outputConfig": {
            "predictionsFormat": facts.GEMINI_BATCH_FORMAT,
            "gcsDestination": {"outputUriPrefix": spec.output_prefix},
        },
        "labels": {label_key: spec.job_label},
    }
