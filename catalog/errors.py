"""Domain errors raised by catalog services; the API maps each to an HTTP status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    """One failing field, named by JSON pointer into the request body."""

    pointer: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"pointer": self.pointer, "message": self.message}


@dataclass
class CatalogError(Exception):
    message: str
    details: list[FieldError] = field(default_factory=list)
    code: str = "error"

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return f"{self.message}: " + "; ".join(f"{d.pointer}: {d.message}" for d in self.details)


class NotFound(CatalogError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_found")


class Conflict(CatalogError):
    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, details or [], code="conflict")


class Invalid(CatalogError):
    """Validation failed; ``details`` names every failing field."""

    def __init__(self, message: str, details: list[FieldError] | None = None) -> None:
        super().__init__(message, details or [], code="validation_error")


class Forbidden(CatalogError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="forbidden")


class Unauthenticated(CatalogError):
    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__(message, code="unauthenticated")


def pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
