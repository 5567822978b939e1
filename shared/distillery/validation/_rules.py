"""The catalogue of validation rules: a stable snake_case code, a severity and the rule in words.

Codes are part of the report format (dashboards and users grep for them): never rename one.
The order of :data:`JSONL_RULES` and :data:`CONFIG_RULES` is the order reports list them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from distillery.facts import (
    EVAL_MAX_EXAMPLES,
    EVAL_MIN_EXAMPLES,
    MAX_DATASET_EXAMPLES,
    MAX_INPUT_TOKENS,
    MAX_OUTPUT_TOKENS,
    RECOMMENDED_MIN_LABELED,
    RECOMMENDED_MIN_UNLABELED,
)

Severity = Literal["error", "warning"]

# The documented limits of the distillation service (SPEC "Dataset format") are facts: the rules
# below quote them from distillery.facts.
#: A line longer than this is rejected without being buffered (a product limit, not a fact).
MAX_LINE_BYTES = 8 << 20

CHARS_PER_TOKEN = 4
TOKEN_ESTIMATE_METHOD = (
    f"Tokens are estimated as ceil(characters / {CHARS_PER_TOKEN}), the documented rule of thumb "
    "of about 4 characters per token for these models; no tokenizer is used, so treat the "
    "figures as approximate."
)


@dataclass(frozen=True)
class Rule:
    """One rule a dataset or config file is checked against."""

    code: str
    severity: Severity
    summary: str


def _error(code: str, summary: str) -> Rule:
    return Rule(code, "error", summary)


def _warning(code: str, summary: str) -> Rule:
    return Rule(code, "warning", summary)


# --- JSON Lines datasets: errors ------------------------------------------------------------------
INVALID_UTF8 = _error("invalid_utf8", "the file must be UTF-8 encoded text")
UTF8_BOM = _error(
    "utf8_bom", "the file must not start with a UTF-8 byte order mark (Vertex AI reads plain UTF-8)"
)
BLANK_LINE = _error("blank_line", "every line must hold one example; blank lines are not allowed")
LINE_TOO_LONG = _error("line_too_long", f"a line must be at most {MAX_LINE_BYTES:,} bytes (8 MiB)")
INVALID_JSON = _error("invalid_json", "each line must be valid JSON")
NOT_AN_OBJECT = _error("not_an_object", "each line must be a JSON object")
INPUT_TEXT_MISSING = _error("input_text_missing", "each example must have an input_text field")
INPUT_TEXT_NOT_STRING = _error("input_text_not_string", "input_text must be a string")
INPUT_TEXT_EMPTY = _error("input_text_empty", "input_text must not be empty or only whitespace")
OUTPUT_TEXT_NOT_STRING = _error(
    "output_text_not_string", "output_text, when present, must be a string"
)
TOO_MANY_EXAMPLES = _error(
    "too_many_examples", f"a dataset may hold at most {MAX_DATASET_EXAMPLES:,} examples"
)
MIXED_LABELING = _error(
    "mixed_labeling",
    "either every example has output_text (labeled) or none has (unlabeled), not a mix",
)
DATASET_EMPTY = _error("dataset_empty", "a dataset must hold at least one example")
EVAL_TOO_FEW_EXAMPLES = _error(
    "eval_too_few_examples", f"an eval set must hold at least {EVAL_MIN_EXAMPLES} examples"
)
EVAL_TOO_MANY_EXAMPLES = _error(
    "eval_too_many_examples", f"an eval set may hold at most {EVAL_MAX_EXAMPLES} examples"
)
EVAL_UNLABELED = _error(
    "eval_unlabeled",
    "every example of an eval set must have output_text: eval metrics compare against it",
)
EVAL_SET_INVALID = _error(
    "eval_set_invalid", "the eval set that goes with this dataset must be valid"
)

# --- JSON Lines datasets: warnings ----------------------------------------------------------------
UNKNOWN_FIELDS = _warning(
    "unknown_fields", "fields other than input_text and output_text are ignored"
)
CRLF_LINE_ENDINGS = _warning(
    "crlf_line_endings",
    "lines should end in \\n; \\r\\n is accepted because \\r is JSON whitespace",
)
DUPLICATE_EXAMPLES = _warning(
    "duplicate_examples", "each example should appear once (same input_text and output_text)"
)
FEW_LABELED_EXAMPLES = _warning(
    "few_labeled_examples",
    f"a labeled dataset should hold at least {RECOMMENDED_MIN_LABELED} examples; "
    "a few hundred high-quality examples are recommended",
)
FEW_UNLABELED_EXAMPLES = _warning(
    "few_unlabeled_examples",
    f"an unlabeled dataset should hold more than {RECOMMENDED_MIN_UNLABELED:,} examples",
)
INPUT_TOO_LONG = _warning(
    "input_too_long",
    f"input_text over {MAX_INPUT_TOKENS:,} tokens will be truncated by the service",
)
OUTPUT_TOO_LONG = _warning(
    "output_too_long",
    f"output_text over {MAX_OUTPUT_TOKENS:,} tokens will be truncated by the service",
)
MISSING_INSTRUCTIONS = _warning(
    "missing_instructions",
    "every example should include the task instructions, not just the bare input",
)
INCONSISTENT_PROMPT_FORMAT = _warning(
    "inconsistent_prompt_format",
    "every example should use the same markers (such as question: / context:) in the same order",
)
TRAIN_EVAL_OVERLAP = _warning(
    "train_eval_overlap",
    "training inputs should not appear in the eval set: eval metrics on them overstate quality",
)

JSONL_RULES: tuple[Rule, ...] = (
    INVALID_UTF8,
    UTF8_BOM,
    BLANK_LINE,
    LINE_TOO_LONG,
    INVALID_JSON,
    NOT_AN_OBJECT,
    INPUT_TEXT_MISSING,
    INPUT_TEXT_NOT_STRING,
    INPUT_TEXT_EMPTY,
    OUTPUT_TEXT_NOT_STRING,
    TOO_MANY_EXAMPLES,
    MIXED_LABELING,
    DATASET_EMPTY,
    EVAL_TOO_FEW_EXAMPLES,
    EVAL_TOO_MANY_EXAMPLES,
    EVAL_UNLABELED,
    EVAL_SET_INVALID,
    UNKNOWN_FIELDS,
    CRLF_LINE_ENDINGS,
    DUPLICATE_EXAMPLES,
    FEW_LABELED_EXAMPLES,
    FEW_UNLABELED_EXAMPLES,
    INPUT_TOO_LONG,
    OUTPUT_TOO_LONG,
    MISSING_INSTRUCTIONS,
    INCONSISTENT_PROMPT_FORMAT,
    TRAIN_EVAL_OVERLAP,
)

# --- Config sidecars ------------------------------------------------------------------------------
CONFIG_NOT_JSON = _error("config_not_json", "a config sidecar must be UTF-8 JSON")
CONFIG_NOT_AN_OBJECT = _error(
    "config_not_an_object", "a config sidecar must be a JSON object of job parameters"
)
CONFIG_DUPLICATE_KEY = _error("config_duplicate_key", "each parameter may be given once")
CONFIG_UNKNOWN_KEY = _error(
    "config_unknown_key", "only the documented distillation job parameters may be set"
)
CONFIG_INVALID_VALUE = _error(
    "config_invalid_value", "each parameter must have the documented type and range"
)
CONFIG_NEEDS_EVAL = _error(
    "config_needs_eval", "evaluation parameters need an eval set next to the dataset"
)
CONFIG_CMEK_UNSUPPORTED = _error(
    "config_cmek_unsupported",
    "a customer-managed key (CMEK) needs GPU tuning and us-central1 for the key and the model",
)
CONFIG_NOT_FOR_BACKEND = _error(
    "config_not_for_backend",
    "a parameter only the other backend reads is refused, not ignored",
)
CONFIG_TRAIN_STEPS_OUTSIDE_RECOMMENDED = _warning(
    "config_train_steps_outside_recommended",
    "train_steps should lie in the range recommended for the task",
)
CONFIG_EVALUATION_INTERVAL_TOO_LONG = _warning(
    "config_evaluation_interval_too_long",
    "evaluation_interval should be at most train_steps, or no evaluation runs",
)

CONFIG_RULES: tuple[Rule, ...] = (
    CONFIG_NOT_JSON,
    CONFIG_NOT_AN_OBJECT,
    CONFIG_DUPLICATE_KEY,
    CONFIG_UNKNOWN_KEY,
    CONFIG_INVALID_VALUE,
    CONFIG_NEEDS_EVAL,
    CONFIG_CMEK_UNSUPPORTED,
    CONFIG_NOT_FOR_BACKEND,
    CONFIG_TRAIN_STEPS_OUTSIDE_RECOMMENDED,
    CONFIG_EVALUATION_INTERVAL_TOO_LONG,
)

#: Every rule, by code.
RULES_BY_CODE: dict[str, Rule] = {rule.code: rule for rule in JSONL_RULES + CONFIG_RULES}
