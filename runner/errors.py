"""The exception tree of kubegrid and the exit codes that carry it across processes.

Every error kubegrid raises on purpose derives from :class:`KubegridError`::

    KubegridError
    ├── UserError            the manifest or the data is wrong; retrying never helps
    │   ├── SpecError        a manifest field is invalid (names the field)
    │   ├── DataError        the dataset does not fit the spec (names the column)
    │   └── FitError         every fit failed, or a fit failed under errorScore=raise
    └── InfraError           storage or the machine failed; a retry may succeed
        └── ResultsError     partial results are missing or corrupt

The runner's exit code is a contract with the operator's podFailurePolicy: a
user error fails the Job index without retrying it, an infrastructure error is
retried under ``backoffLimitPerIndex``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER_ERROR = 2
EXIT_INFRA_ERROR = 75  # EX_TEMPFAIL from sysexits.h: "try again later"


class KubegridError(Exception):
    """Base of every error kubegrid raises deliberately."""

    exit_code = EXIT_INTERNAL


class UserError(KubegridError):
    """A mistake in the manifest or the data: the message says how to fix it."""

    exit_code = EXIT_USER_ERROR


class SpecError(UserError):
    """A manifest field is invalid.

    ``field`` is the dotted path of the field inside the manifest, for example
    ``spec.paramGrid.C``; the message names the bad value and the fix.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Raised in a forked worker, the error is pickled back to the parent;
        # the default would call __init__ with the joined text alone and fail.
        return type(self), (self.field, self.message)


class DataError(UserError):
    """The dataset cannot serve the search as specified."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Raised in a forked worker, the error is pickled back to the parent;
        # the default would call __init__ with the joined text alone and fail.
        return type(self), (self.field, self.message)


class FitError(UserError):
    """Fits failed in a way that ends the search (errorScore=raise, or all fits)."""


class InfraError(KubegridError):
    """Storage, network or machine trouble; the same work may succeed on retry."""

    exit_code = EXIT_INFRA_ERROR


class ResultsError(InfraError):
    """Partial results are missing or fail their checksum; rerun the named shards."""


class MissingResults(ResultsError):
    """Some tasks have no readable result; ``shards`` hold them in this plan."""

    def __init__(self, message: str, shards: list[int]) -> None:
        super().__init__(message)
        self.shards = shards
