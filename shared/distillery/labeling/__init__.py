"""Teacher labeling through batch prediction: distilling step-by-step on Gemini tuning jobs.

See :mod:`distillery.labeling._spec` for what a labeling run is and where its files go.
"""

from distillery.labeling._spec import (
    ANSWER_MARKER,
    DEFAULT_LABEL_TASK_PREFIX,
    DEFAULT_RATIONALE_TASK_PREFIX,
    GIVEN_ANSWER_HINT,
    INSTRUCTION_VERSION,
    LABELING_MODES,
    LINE_LABEL_KEY,
    RATIONALE_MARKER,
    STEP_BY_STEP_INSTRUCTION,
    LabelingMode,
    LabelingPaths,
    LabelingSpec,
    batch_job_body,
    instruction_sha256,
    labeling_paths,
)

__all__ = [
    "ANSWER_MARKER",
    "DEFAULT_LABEL_TASK_PREFIX",
    "DEFAULT_RATIONALE_TASK_PREFIX",
    "GIVEN_ANSWER_HINT",
    "INSTRUCTION_VERSION",
    "LABELING_MODES",
    "LINE_LABEL_KEY",
    "RATIONALE_MARKER",
    "STEP_BY_STEP_INSTRUCTION",
    "LabelingMode",
    "LabelingPaths",
    "LabelingSpec",
    "batch_job_body",
    "instruction_sha256",
    "labeling_paths",
]
