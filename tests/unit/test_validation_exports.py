"""The public surface of ``distillery.validation`` is complete and stable."""

from __future__ import annotations

import distillery.validation as validation
from distillery.validation import CONFIG_RULES, JSONL_RULES, RULES_BY_CODE


def test_validation_exports_are_complete() -> None:
    public = {name for name in dir(validation) if not name.startswith("_")}
    modules = {"cli"}
    assert public - modules - {"annotations"} <= set(validation.__all__)
    for name in validation.__all__:
        assert hasattr(validation, name), name
    for name in (
        "DatasetKind",
        "classify_object_name",
        "validate_jsonl",
        "JsonlValidation",
        "validate_config",
        "ConfigValidation",
        "add_overlap_findings",
        "ValidationReport",
        "RuleResult",
        "Finding",
        "render_text",
    ):
        assert name in validation.__all__


def test_validation_rule_codes_are_unique_snake_case() -> None:
    codes = [rule.code for rule in JSONL_RULES + CONFIG_RULES]
    assert len(codes) == len(set(codes)) == len(RULES_BY_CODE)
    assert all(code.replace("_", "").isalnum() and code.islower() for code in codes)
