"""google.rpc status codes and the API error the emulator answers with.

The Vertex AI REST API answers errors as ``{"error": {"code": HTTP, "message", "status", ...}}``
with the HTTP status mapped from the canonical gRPC code; the official clients turn that into
``google.api_core.exceptions`` (400 → BadRequest, 404 → NotFound, 409 → Conflict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Canonical code name → (numeric google.rpc.Code, HTTP status).
CODES: dict[str, tuple[int, int]] = {
    "OK": (0, 200),
    "CANCELLED": (1, 499),
    "UNKNOWN": (2, 500),
    "INVALID_ARGUMENT": (3, 400),
    "NOT_FOUND": (5, 404),
    "ALREADY_EXISTS": (6, 409),
    "FAILED_PRECONDITION": (9, 400),
    "UNIMPLEMENTED": (12, 501),
    "INTERNAL": (13, 500),
    "UNAVAILABLE": (14, 503),
}


def rpc_status(code: str, message: str) -> dict[str, Any]:
    """A ``google.rpc.Status`` as JSON (what ``PipelineJob.error`` holds)."""
    return {"code": CODES[code][0], "message": message}


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field (``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    description: str


@dataclass
class ApiError(Exception):
    """A request the emulated API refuses; rendered as a google.rpc error body."""

    status: str
    message: str
    violations: Sequence[FieldViolation] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        """The HTTP status of the answer."""
        return CODES[self.status][1]

    def body(self) -> dict[str, Any]:
        """The JSON error body, with a ``google.rpc.BadRequest`` detail when fields are named."""
        error: dict[str, Any] = {
            "code": self.http_status,
            "message": self.message,
            "status": self.status,
        }
        if self.violations:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [
                        {"field": v.field, "description": v.description} for v in self.violations
                    ],
                }
            ]
        return {"error": error}
