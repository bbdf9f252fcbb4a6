"""The project's own exceptions: one root, so callers can tell our errors from bugs."""

from __future__ import annotations


class DriftkeeperError(Exception):
    """Root of every error Driftkeeper raises on purpose."""


class InvalidInputError(DriftkeeperError):
    """Input that breaks the contract; names the offending field so the user can fix it."""

    def __init__(self, message: str, field: str | None = None, row: int | None = None,
                 reason: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.row = row
        self.reason = reason  # a short code for metrics: json, missing_field, type, ...

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.row is not None:
            body["row"] = self.row
        return body


class DataError(DriftkeeperError):
    """A data file that cannot be used (missing column, unknown category, bad numbers)."""


class ModelStoreError(DriftkeeperError):
    """A model directory or version that is missing or incomplete."""


class PromotionConflictError(ModelStoreError):
    """A compare-and-swap promotion found ``current`` moved since the candidate was judged."""

    def __init__(self, message: str, expected: object, actual: str | None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class PolicyError(DriftkeeperError):
    """A DriftPolicy document that does not validate; the message names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{field}: {message}")
        self.message = message
        self.field = field


class TrainingError(DriftkeeperError):
    """Training could not produce a usable model version."""


class SchemaError(DriftkeeperError):
    """A table, or a schema file, from which no feature schema can be made; names the
    column (``column``) and says how to fix it."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


class SimulationError(DriftkeeperError):
    """The simulation could not run (service unreachable, a scenario the table cannot play,
    a bad override)."""
