"""Object names → dataset kinds, by the bucket conventions."""

from __future__ import annotations

import pytest

from distillery.validation import DatasetKind, classify_object_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("datasets/support.jsonl", (DatasetKind.TRAINING, "support")),
        ("datasets/support.eval.jsonl", (DatasetKind.EVAL, "support")),
        ("datasets/support.config.json", (DatasetKind.CONFIG, "support")),
        ("datasets/team/a.jsonl", (DatasetKind.TRAINING, "team/a")),
        ("datasets/team/a.eval.jsonl", (DatasetKind.EVAL, "team/a")),
        ("datasets/v1.2.jsonl", (DatasetKind.TRAINING, "v1.2")),
    ],
)
def test_classify_object_name_recognises_dataset_files(
    name: str, expected: tuple[DatasetKind, str]
) -> None:
    assert classify_object_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "datasets/.jsonl",
        "datasets/.eval.jsonl",
        "datasets/.config.json",
        "datasets/team/.jsonl",
        "datasets/a.json",
        "datasets/a.csv",
        "datasets/a.jsonl.tmp",
        "reports/a.jsonl",
        "validated/abc/a.jsonl",
        "a.jsonl",
        "datasets/",
    ],
)
def test_classify_object_name_ignores_everything_else(name: str) -> None:
    assert classify_object_name(name) is None


def test_classify_object_name_honours_another_prefix() -> None:
    assert classify_object_name("incoming/x.jsonl", "incoming/") == (DatasetKind.TRAINING, "x")
    assert classify_object_name("datasets/x.jsonl", "incoming/") is None


def test_dataset_kind_values_are_stable() -> None:
    assert [kind.value for kind in DatasetKind] == ["training", "eval", "golden", "config"]
