"""What an object under ``datasets/`` is, judged by its name alone (the bucket conventions)."""

from __future__ import annotations

from enum import StrEnum


class DatasetKind(StrEnum):
    """The kinds of file a user drops under ``datasets/``."""

    TRAINING = "training"
    EVAL = "eval"
    #: A family's golden set: the frozen examples its models are judged on (eval-set rules).
    GOLDEN = "golden"
    CONFIG = "config"


# Longest suffix first: "x.eval.jsonl" also ends with ".jsonl".
_SUFFIXES: tuple[tuple[str, DatasetKind], ...] = (
    (".eval.jsonl", DatasetKind.EVAL),
    (".golden.jsonl", DatasetKind.GOLDEN),
    (".config.json", DatasetKind.CONFIG),
    (".jsonl", DatasetKind.TRAINING),
)


def classify_object_name(
    name: str, datasets_prefix: str = "datasets/"
) -> tuple[DatasetKind, str] | None:
    """The kind and dataset name of object ``name``, or ``None`` when it is not a dataset file.

    ``datasets/<name>.jsonl`` is a training set, ``datasets/<name>.eval.jsonl`` its eval set,
    ``datasets/<name>.golden.jsonl`` the golden set its models are judged on and
    ``datasets/<name>.config.json`` its config sidecar. ``<name>`` may contain folders
    (``datasets/team/a.jsonl`` → ``"team/a"``) but must not be empty, nor end in a folder
    separator. Anything outside ``datasets_prefix`` or with another suffix is not a dataset file.
    Raises nothing.
    """
    if not name.startswith(datasets_prefix):
        return None
    relative = name[len(datasets_prefix) :]
    for suffix, kind in _SUFFIXES:
        if relative.endswith(suffix):
            stem = relative[: -len(suffix)]
            if not stem or stem.endswith("/"):
                return None
            return kind, stem
    return None
