"""The errors of the local stack, inside Distillery's one error tree.

A missing program is a :class:`~distillery.core.errors.ConfigurationError` (nothing runs until it
is installed); a service that does not come up is a
:class:`~distillery.core.errors.ServiceUnavailableError`.
"""

from __future__ import annotations

from distillery.core.errors import ConfigurationError, DistilleryError, ServiceUnavailableError


class LocalStackError(DistilleryError):
    """The local stack could not do what was asked."""


class MissingToolError(LocalStackError, ConfigurationError):
    """A program the stack runs (Java, an emulator, fake-gcs-server, the functions) is missing."""


class ServiceStartError(LocalStackError, ServiceUnavailableError):
    """A service of the stack exited or did not become ready in time."""


class PortInUseError(ServiceStartError):
    """A port the stack was told to use is taken by another process."""


class StackRunningError(LocalStackError):
    """A local stack already runs from this state directory."""


class StackNotRunningError(LocalStackError, ServiceUnavailableError):
    """No local stack runs from this state directory."""
