"""The one shape of a refusal from the registry, config and gateway code: a domain error.

A domain error says *what* went wrong, never how a transport answers it: a stable `code`
(snake_case, the `reason` of the problem document), a human `message` that never repeats a
secret, and optionally `errors`, the list of `{path, code, message}` of a validation. It
carries no HTTP status: the gateway holds one `{code: status}` table per subclass
(`vivified.gateway.problems`) and turns any of them into problem+json in one place.
Subclasses per domain: `RegistryError`, `TokenError`, `AdminError` (registry),
`ConfigError` (config), `LaneError` (the gateway's operator lane).

`policy/` never needs this module: policy decisions carry a reason code of their own.

Refusals that are audited: the audit record keeps a `status` number, the outcome the caller
answered. Registry and config code does not know HTTP, so whoever constructs them (the
gateway's `Core`) hands in a `RefusalStatus`, the gateway's `status_of`, and the record's
status is computed from the very error that is raised: the same number the client sees.
Successes keep the plain numbers their callers answer (200, 201, 204).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


class DomainError(Exception):
    """A refusal: a stable `code`, a human `message`, optional `errors` for validation and
    the `subject` acted upon when the error knows it better than the caller (for the audit
    trail, e.g. `admin:<name>`)."""

    def __init__(
        self,
        code: str,
        message: str,
        errors: Sequence[Mapping[str, Any]] | None = None,
        *,
        subject: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors
        self.subject = subject

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


RefusalStatus = Callable[[DomainError], int]
"""How a caller numbers a refusal in the audit trail (the gateway: the answer's status)."""
