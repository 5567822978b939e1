"""``distillery submit``: validate a dataset here, then upload it to the bucket."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from distillery.commands.cli import EXIT_OK
from distillery.commands.ops._common import Invalid, Usage, add_watch_options, dependencies, run
from distillery.commands.ops.jobs import watch_request
from distillery.commands.watch import wait_until
from distillery.core.runtime import Dependencies


def register(subparsers: Any) -> None:
    """Add ``submit`` to the ``distillery`` command."""
    submit = subparsers.add_parser(
        "submit",
        help="validate a dataset here, then upload it to the bucket (which launches a job)",
        description="Validate a training set (and its eval set and config) on this machine, "
        "then upload them under the bucket's datasets/ folder: the eval set and config first, "
        "the training set last, since the training set's upload starts validation and launch. "
        "Nothing is uploaded when a file is invalid.",
    )
    submit.add_argument("path", type=Path, help="the training set (JSON Lines)")
    submit.add_argument("--eval", dest="eval_path", type=Path, help="its evaluation set")
    submit.add_argument("--config", dest="config_path", type=Path, help="its config sidecar")
    submit.add_argument(
        "--name",
        help="the dataset's name in the bucket: datasets/NAME.jsonl (default: the file's name)",
    )
    add_watch_options(submit, "then follow the job it launches until it ends")
    submit.set_defaults(handler=run, action=_submit)


def _dataset_name(args: argparse.Namespace) -> str:
    name = str(args.name or args.path.name)
    for suffix in (".eval.jsonl", ".config.json", ".jsonl"):
        if name.endswith(suffix):
            if suffix != ".jsonl":
                raise Usage(f"{name} is named like an {suffix} file; give the training set")
            name = name[: -len(suffix)]
            break
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise Usage(f"not a dataset name: {name!r}")
    return name


def _submit(args: argparse.Namespace) -> int:
    from distillery.commands.validate import UsageError, validate_files
    from distillery.services.datasets import dataset_id
    from distillery.validation import render_text

    name = _dataset_name(args)
    try:
        reports = validate_files(args.path, args.eval_path, args.config_path)
    except UsageError as exc:
        raise Usage(str(exc)) from None
    invalid = [report for report in reports if not report.valid]
    if invalid:
        sys.stderr.write("\n".join(render_text(report) for report in invalid))
        raise Invalid(
            f"{', '.join(r.source for r in invalid)} not valid: nothing was uploaded "
            "(`distillery validate` shows every report)"
        )
    deps = dependencies("bucket")
    settings = deps.settings
    bucket = settings.bucket
    prefix = f"{settings.datasets_prefix}{name}"
    notes = []
    for given, suffix, what in (
        (args.eval_path, ".eval.jsonl", "eval set"),
        (args.config_path, ".config.json", "config"),
    ):
        if given is None and deps.objects.find(bucket, prefix + suffix) is not None:
            notes.append(
                f"gs://{bucket}/{prefix}{suffix} is already in the bucket: it is used as the "
                f"{what} (upload another with --{what.split()[0]}, or delete it)"
            )
    uploads = [
        (args.eval_path, ".eval.jsonl"),
        (args.config_path, ".config.json"),
        (args.path, ".jsonl"),
    ]
    uploaded: list[dict[str, Any]] = []
    for path, suffix in uploads:
        if path is None:
            continue
        content_type = "application/json" if suffix == ".config.json" else "application/jsonl"
        info = deps.objects.write_bytes(
            bucket, prefix + suffix, path.read_bytes(), content_type=content_type
        )
        uploaded.append({"uri": info.uri, "generation": info.generation})
    training = uploaded[-1]
    record_id = dataset_id(bucket, prefix + ".jsonl", int(training["generation"]))
    if args.as_json:
        print(json.dumps({"dataset_id": record_id, "uploaded": uploaded, "notes": notes}))
    else:
        for note in notes:
            print(f"note: {note}")
        for item in uploaded:
            print(f"uploaded {item['uri']} (generation {item['generation']})")
        print(f"dataset {record_id}: validation and launch follow in the bucket's functions")
    if not args.watch:
        return EXIT_OK
    record = wait_until(
        lambda: _validated(deps, record_id), "the dataset to be validated", args.timeout
    )
    if record["status"] != "valid":
        raise Invalid(f"the bucket's validation found the dataset {record['status']}")
    return watch_request(deps, record_id, args)


def _validated(deps: Dependencies, record_id: str) -> dict[str, Any] | None:
    record = deps.records.get(deps.settings.datasets_collection, record_id)
    if not record or not record.get("status"):
        return None
    launch = (record.get("launch") or {}).get("state")
    return (
        record if record["status"] != "valid" or launch in ("published", "not_applicable") else None
    )
