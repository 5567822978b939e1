"""The ``distillery`` command.

Each capability registers its own subcommands (``register(subparsers)``) so this file stays a
dispatcher. Exit codes: 0 success, 1 the thing checked is bad (an invalid dataset, a refused plan,
an unknown job, a job that ended FAILED or REJECTED), 2 usage or configuration errors, 3 a service
could not be reached, 4 a wait timed out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from distillery import __version__
from distillery.core.errors import ConfigurationError, DistilleryError, RetryableError

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_TIMEOUT = 4


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every capability's subcommands registered."""
    import distillery.commands.validate as validation_cli
    import distillery.local.stack.cli as localstack_cli
    from distillery.commands import ops as ops_cli
    from distillery.commands import plan as plan_cli
    from distillery.commands import report as report_cli

    parser = argparse.ArgumentParser(
        prog="distillery",
        description="Continuous model distillation on Google Cloud (and on one laptop).",
    )
    parser.add_argument("--version", action="version", version=f"distillery {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    validation_cli.register(subparsers)
    localstack_cli.register(subparsers)
    plan_cli.register(subparsers)
    ops_cli.register(subparsers)
    report_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigurationError as exc:
        print(f"distillery: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RetryableError as exc:
        print(f"distillery: service unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except DistilleryError as exc:
        print(f"distillery: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
