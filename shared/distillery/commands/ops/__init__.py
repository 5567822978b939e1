"""The operator's commands: ``submit``, ``jobs``, ``show``, ``watch``, ``rerun``, ``rollback``,
``golden``, ``cancel``, ``predict``.

They talk to the project the environment names (``GOOGLE_CLOUD_PROJECT``, ``DISTILLERY_BUCKET``
and the rest of the settings), through the same clients as the functions; with the emulators'
variables set (``eval "$(distillery dev env)"``) they talk to the local stack. Exit codes (as
``distillery.commands.cli`` says): 0 success, 1 the thing asked about is bad or ended badly (an
invalid dataset, an unknown job, a job that FAILED or was REJECTED), 2 usage or configuration
errors, 3 a service could not be reached, 4 a wait timed out.

One module per group of commands: :mod:`.submit`; :mod:`.jobs` (``jobs``, ``show``, ``watch``);
:mod:`.changes` (``rerun``, ``rollback``, ``golden``); :mod:`.cancel`; :mod:`.predict`; what
they share (errors and their exit codes, options, settings, output) is in ``_common``.
"""

from __future__ import annotations

from typing import Any

from distillery.commands.ops import cancel, changes, jobs, predict, submit
from distillery.commands.ops._common import dependencies

__all__ = ["dependencies", "register"]


def register(subparsers: Any) -> None:
    """Add the operator's commands to the ``distillery`` command (in the order help lists them)."""
    submit.register(subparsers)
    jobs.register(subparsers)
    changes.register(subparsers)
    cancel.register(subparsers)
    predict.register(subparsers)
