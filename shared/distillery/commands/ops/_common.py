"""What the operator's commands share: their errors and exit codes, options, settings, output."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from distillery.commands.cli import EXIT_INVALID, EXIT_TIMEOUT, EXIT_USAGE
from distillery.core.errors import ConfigurationError
from distillery.core.runtime import Dependencies, google_dependencies
from distillery.core.settings import Settings

DEV_ENV_HINT = 'for the local stack run: eval "$(distillery dev env)"'


class Usage(Exception):
    """The command line asks for something that cannot be done as given (exit 2)."""


class Invalid(Exception):
    """What the command was given or asked about is bad (exit 1); the message says why."""


# --- options -------------------------------------------------------------------------------------


def positive(text: str) -> int:
    """``--limit``'s type: a whole number of at least 1.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not one.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    """``--timeout``'s and ``--interval``'s type: a number of seconds above 0.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not one.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def add_follow_options(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``--timeout`` and ``--interval``: how a command follows a job."""
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="one JSON object a line"
    )
    parser.add_argument(
        "--timeout", type=seconds, default=None, help="stop waiting after SECONDS (exit 4)"
    )
    parser.add_argument(
        "--interval",
        type=seconds,
        default=1.0,
        help="seconds between looks at progress (%(default)s)",
    )


def add_watch_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--watch`` (helped as ``what``) and the follow options, for commands that launch a job."""
    parser.add_argument("--watch", action="store_true", help=what)
    add_follow_options(parser)


# --- running -------------------------------------------------------------------------------------


def _settings(*required: str) -> Settings:
    settings = Settings.from_env()
    missing = [Settings.env_name(name) for name in required if not getattr(settings, name)]
    if missing:
        raise ConfigurationError(f"not set: {', '.join(missing)} ({DEV_ENV_HINT})")
    return settings


def dependencies(*required: str) -> Dependencies:
    """The Google Cloud adapters the environment points at (emulators included).

    Raises:
        ConfigurationError: the project, or a setting of ``required``, is not set.
    """
    # The library logs for Cloud Logging; a command reports in its own words.
    library = logging.getLogger("distillery")
    if not any(isinstance(h, logging.NullHandler) for h in library.handlers):
        library.addHandler(logging.NullHandler())
    return google_dependencies(_settings("project", *required))


def run(args: argparse.Namespace) -> int:
    """Run the command's ``action``, mapping the commands' errors to exit codes."""
    command = f"distillery {args.command}"
    try:
        code: int = args.action(args)
    except Usage as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Invalid as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except TimeoutError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    return code


# --- output and look-ups -------------------------------------------------------------------------


def print_json(document: Any) -> None:
    """Print ``document`` as indented JSON with sorted keys (what is not JSON, as text)."""
    print(json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True, default=str))


def job_record(deps: Dependencies, job_id: str) -> dict[str, Any]:
    """The record of job ``job_id``.

    Raises:
        Invalid: there is no such job (the message names up to three whose id starts so).
    """
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    if record is None:
        # The ids from ``job_id`` on, in order: the first ones that start so are the suggestions.
        following = deps.records.list(
            deps.settings.jobs_collection, order_by="job_id", start_at=[job_id], limit=3
        )
        known = [r["job_id"] for r in following if str(r.get("job_id", "")).startswith(job_id)]
        hint = f"; did you mean {', '.join(known)}?" if known else ""
        raise Invalid(f"there is no job {job_id!r}{hint}")
    return record
