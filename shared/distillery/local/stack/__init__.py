"""The local Google Cloud stack: emulators, the functions and a local Eventarc bridge.

``distillery dev up`` runs it for people; the test fixtures run it for pytest. Both go through
:class:`Stack`.
"""

from distillery.local.stack.control import (
    POLL_TUNING_JOBS_VARIABLE,
    STATE_DIR_VARIABLE,
    Stack,
    StackConfig,
    StackState,
    default_state_dir,
)
from distillery.local.stack.errors import (
    LocalStackError,
    MissingToolError,
    PortInUseError,
    ServiceStartError,
    StackNotRunningError,
    StackRunningError,
)
from distillery.local.stack.routes import (
    ROUTES,
    MessagePublished,
    Route,
    StorageFinalized,
    default_functions_source,
)

__all__ = [
    "POLL_TUNING_JOBS_VARIABLE",
    "ROUTES",
    "STATE_DIR_VARIABLE",
    "LocalStackError",
    "MessagePublished",
    "MissingToolError",
    "PortInUseError",
    "Route",
    "ServiceStartError",
    "Stack",
    "StackConfig",
    "StackNotRunningError",
    "StackRunningError",
    "StackState",
    "StorageFinalized",
    "default_functions_source",
    "default_state_dir",
]
