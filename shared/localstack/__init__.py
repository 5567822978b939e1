"""The local Google Cloud stack: emulators, the functions and a local Eventarc bridge.

``distillery dev up`` runs it for people; the test fixtures run it for pytest. Both go through
:class:`Stack`.
"""

from distillery.localstack.errors import (
    LocalStackError,
    MissingToolError,
    PortInUseError,
    ServiceStartError,
    StackNotRunningError,
    StackRunningError,
)
from distillery.localstack.routes import (
    ROUTES,
    MessagePublished,
    Route,
    StorageFinalized,
    default_functions_source,
)
from distillery.localstack.stack import (
    STATE_DIR_VARIABLE,
    Stack,
    StackConfig,
    StackState,
    default_state_dir,
)

__all__ = [
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
