"""The rules a dataset for a Gemini supervised tuning job is checked against, beyond the seed's.

A dataset for the ``gemini`` backend is checked by the seed's line rules (:mod:`._rules`:
encoding, JSON, ``input_text``/``output_text`` fields, duplicates, prompt format) and by these:
the native ``contents`` format and the documented limits of the chosen base model
(:data:`distillery.facts.GEMINI_TUNING_MODELS`). Codes are part of the report format, like the
seed's: never rename one. The order of :data:`GEMINI_RULES` is the order reports list them in.
"""

from __future__ import annotations

from distillery import facts
from distillery.validation._rules import Rule


def _error(code: str, summary: str) -> Rule:
    return Rule(code, "error", summary)


MIXED_FORMATS = _error(
    "mixed_formats",
    "a dataset holds input_text/output_text lines or contents lines, not both",
)
CONTENTS_MISSING = _error(
    "contents_missing", "a contents example must have a contents array of turns"
)
CONTENTS_INVALID = _error("contents_invalid", "contents must be a non-empty array of turns")
CONTENTS_TURN_INVALID = _error(
    "contents_turn_invalid", "each turn of contents must be an object with a role and parts"
)
CONTENTS_ROLE_INVALID = _error(
    "contents_role_invalid",
    f'each turn\'s role must be "{facts.GEMINI_USER_ROLE}" or "{facts.GEMINI_MODEL_ROLE}"',
)
CONTENTS_ROLE_ORDER = _error(
    "contents_role_order",
    "turns must alternate user and model, starting with user and ending with the model's answer",
)
CONTENTS_PARTS_INVALID = _error(
    "contents_parts_invalid",
    'parts must be a non-empty array of {"text": ...} parts whose text is not empty',
)
SYSTEM_INSTRUCTION_INVALID = _error(
    "system_instruction_invalid",
    'systemInstruction, when present, must be {"role"?: string, "parts": [{"text": ...}]}',
)
CONTENTS_UNKNOWN_KEY = _error(
    "contents_unknown_key",
    "a contents example may only hold systemInstruction and contents; a turn role and parts; "
    "a part text",
)
OUTPUT_TEXT_REQUIRED = _error(
    "output_text_required",
    "supervised tuning trains on prompt and answer: in a set of labeled lines, a line without "
    "an answer must be labeled (the teacher labels a set only when every line is unlabeled)",
)
OUTPUT_TEXT_EMPTY = _error(
    "output_text_empty", "output_text must not be empty: it is the answer the model learns"
)
EXAMPLE_TOO_LONG = _error(
    "example_too_long",
    "an example (input and output) may hold at most the base model's tokens per training example",
)
TOO_MANY_EXAMPLES_FOR_MODEL = _error(
    "too_many_examples_for_model",
    "a training set may hold at most the base model's number of training examples",
)
EVAL_TOO_MANY_EXAMPLES_FOR_MODEL = _error(
    "eval_too_many_examples_for_model",
    "a validation set may hold at most the base model's number of validation examples",
)
DATASET_TOO_LARGE = _error(
    "dataset_too_large",
    "the dataset a tuning job reads (the converted copy) may be at most the base model's file size",
)
PROMPT_TURNS_INVALID = _error(
    "prompt_turns_invalid",
    "a distillation prompt is one user turn (an answer after it is dropped): the teacher "
    "writes the response",
)
ANSWER_DROPPED = Rule(
    "answer_dropped",
    "warning",
    "in the distillation mode the teacher writes the answers: an answer in the training set is "
    "left out of the prompts-only copy",
)
TEACHER_LABELS = Rule(
    "teacher_labels",
    "warning",
    "an unlabeled training set is labeled by the teacher model before tuning (a batch "
    "prediction job, billed by the teacher's tokens)",
)
FEW_TUNING_EXAMPLES = Rule(
    "few_tuning_examples",
    "warning",
    f"a tuning dataset should start with at least {facts.GEMINI_RECOMMENDED_MIN_EXAMPLES} examples",
)

GEMINI_RULES: tuple[Rule, ...] = (
    MIXED_FORMATS,
    CONTENTS_MISSING,
    CONTENTS_INVALID,
    CONTENTS_TURN_INVALID,
    CONTENTS_ROLE_INVALID,
    CONTENTS_ROLE_ORDER,
    CONTENTS_PARTS_INVALID,
    SYSTEM_INSTRUCTION_INVALID,
    CONTENTS_UNKNOWN_KEY,
    PROMPT_TURNS_INVALID,
    OUTPUT_TEXT_REQUIRED,
    OUTPUT_TEXT_EMPTY,
    EXAMPLE_TOO_LONG,
    TOO_MANY_EXAMPLES_FOR_MODEL,
    EVAL_TOO_MANY_EXAMPLES_FOR_MODEL,
    DATASET_TOO_LARGE,
    ANSWER_DROPPED,
    TEACHER_LABELS,
    FEW_TUNING_EXAMPLES,
)
#: Rules about the dataset as a whole: their findings name no line (the example-count rules
#: name the first line over the limit).
GEMINI_DATASET_RULES: frozenset[str] = frozenset(
    {DATASET_TOO_LARGE.code, TEACHER_LABELS.code, FEW_TUNING_EXAMPLES.code}
)
