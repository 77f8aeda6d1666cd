"""The error every rule check raises, and how its message is worded."""

from __future__ import annotations

from typing import Any

from alarmer.errors import AlarmerError


class RuleError(AlarmerError, ValueError):
    """An alarm definition is invalid.

    :param message: the complete sentence shown to the client; it names
        the field and the reason.
    :param field: dotted path of the offending field (``""`` for the
        whole body).
    :param status: the HTTP status an API should answer (400, or 401 for
        what the caller may not do).
    """

    def __init__(self, message: str, field: str = "", status: int = 400):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def invalid(field: str, value: Any, reason: str) -> RuleError:
    """Build WSME/Aodh's wording: ``Invalid input for field/attribute``."""
    return RuleError(
        f"Invalid input for field/attribute {field}. "
        f"Value: '{value}'. {reason}",
        field,
    )
