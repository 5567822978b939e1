"""Dataset validation: is a file under ``datasets/`` fit for a distillation job, and why not.

The public surface is re-exported here; the modules behind it are private. A JSON Lines dataset
is validated in one streaming pass (:func:`validate_jsonl`), a config sidecar in one read
(:func:`validate_config`); both return a :class:`ValidationReport` that lists every rule broken
with specific, line-numbered findings.

The service's limits exported here (``MAX_EXAMPLES``, ``MAX_INPUT_TOKENS``, ``MAX_OUTPUT_TOKENS``)
are the objects of :mod:`distillery.facts`, under the names this package has always used; the
keys a config sidecar may set are the override schema of :mod:`distillery.overrides`.

A dataset is validated for a training backend by :func:`validated_copy`, which also yields the
copy that backend's job trains on: the input unchanged for ``pipeline``, ``contents`` lines
(converted with :func:`to_contents`, or native and checked against the base model's limits,
:data:`GEMINI_RULES`) for ``gemini``.
"""

from distillery.facts import MAX_DATASET_EXAMPLES as MAX_EXAMPLES
from distillery.facts import MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS
from distillery.validation._config import ConfigValidation, validate_config
from distillery.validation._convert import ConversionError, convert_jsonl, to_contents, to_text
from distillery.validation._copy import BACKENDS, Backend, ValidatedCopy, validated_copy
from distillery.validation._gemini_rules import GEMINI_RULES
from distillery.validation._jsonl import (
    JsonlValidation,
    add_overlap_findings,
    text_digest,
    validate_jsonl,
)
from distillery.validation._names import DatasetKind, classify_object_name
from distillery.validation._render import render_text
from distillery.validation._report import Finding, RuleResult, ValidationReport
from distillery.validation._rules import (
    CHARS_PER_TOKEN,
    CONFIG_RULES,
    JSONL_RULES,
    MAX_LINE_BYTES,
    RULES_BY_CODE,
    TOKEN_ESTIMATE_METHOD,
    Rule,
)

__all__ = [
    "BACKENDS",
    "CHARS_PER_TOKEN",
    "CONFIG_RULES",
    "GEMINI_RULES",
    "JSONL_RULES",
    "MAX_EXAMPLES",
    "MAX_INPUT_TOKENS",
    "MAX_LINE_BYTES",
    "MAX_OUTPUT_TOKENS",
    "RULES_BY_CODE",
    "TOKEN_ESTIMATE_METHOD",
    "Backend",
    "ConfigValidation",
    "ConversionError",
    "DatasetKind",
    "Finding",
    "JsonlValidation",
    "Rule",
    "RuleResult",
    "ValidatedCopy",
    "ValidationReport",
    "add_overlap_findings",
    "classify_object_name",
    "convert_jsonl",
    "render_text",
    "text_digest",
    "to_contents",
    "to_text",
    "validate_config",
    "validate_jsonl",
    "validated_copy",
]
