"""The one exception hierarchy of invoice-sync.

Whether an error is worth retrying is a property of its class (``retryable``),
the way aiokafka marks its errors, so retry logic never guesses from messages::

    InvoiceSyncError
    ├── ConfigurationError                 permanent: fix the settings
    ├── InvalidEventError                  permanent: the event itself is bad
    │   ├── MalformedEventError            MALFORMED (not JSON, not an object)
    │   ├── SchemaViolationError           SCHEMA_VIOLATION
    │   └── ValidationFailedError          VALIDATION (invoice-domain rules)
    ├── PlatformError                      anything the tax platform answered or did not
    │   ├── PlatformRejectedError          permanent: 422, or a 409 whose echo differs
    │   ├── PlatformAuthError              401: stop submitting, alert (never dead-letter)
    │   ├── PlatformProtocolError          permanent: an answer outside the contract
    │   └── PlatformUnavailableError       retryable, may carry ``retry_after``
    │       ├── PlatformRateLimitedError   429
    │       ├── PlatformMaintenanceError   503
    │       ├── PlatformServerError        500/502/504
    │       ├── PlatformConnectError       request never reached the platform
    │       └── PlatformInDoubtError       timeout / dropped connection after sending
    └── LedgerError
        ├── LedgerUnavailableError         retryable: the database is away
        └── InvalidTransitionError         permanent: a state change the machine forbids
"""

from __future__ import annotations

from typing import ClassVar


class InvoiceSyncError(Exception):
    """Root of every error invoice-sync raises on purpose."""

    retryable: ClassVar[bool] = False
    #: reason code carried into ``invoice.failed`` and the dead-letter headers
    reason_code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, invoice_key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.invoice_key = invoice_key


class ConfigurationError(InvoiceSyncError):
    reason_code = "CONFIGURATION"


class InvalidEventError(InvoiceSyncError):
    """The event can never succeed as it is; ``field`` names the offending path."""

    def __init__(
        self, message: str, *, field: str | None = None, invoice_key: str | None = None
    ) -> None:
        super().__init__(message, invoice_key=invoice_key)
        self.field = field


class MalformedEventError(InvalidEventError):
    reason_code = "MALFORMED"


class SchemaViolationError(InvalidEventError):
    reason_code = "SCHEMA_VIOLATION"


class ValidationFailedError(InvalidEventError):
    reason_code = "VALIDATION"


class PlatformError(InvoiceSyncError):
    """The platform answered badly or not at all; carries what it said."""

    reason_code = "PLATFORM_ERROR"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        platform_code: str | None = None,
        invoice_key: str | None = None,
    ) -> None:
        super().__init__(message, invoice_key=invoice_key)
        self.status = status
        self.platform_code = platform_code


class PlatformRejectedError(PlatformError):
    """A permanent rejection; ``platform_code`` is the reason code to report."""

    def __init__(
        self,
        message: str,
        *,
        platform_code: str,
        field: str | None = None,
        status: int | None = 422,
        invoice_key: str | None = None,
    ) -> None:
        super().__init__(
            message, status=status, platform_code=platform_code, invoice_key=invoice_key
        )
        self.field = field

    @property
    def code(self) -> str:
        assert self.platform_code is not None
        return self.platform_code


class PlatformAuthError(PlatformError):
    reason_code = "UNAUTHORIZED"


class PlatformProtocolError(PlatformError):
    reason_code = "PLATFORM_PROTOCOL"


class PlatformUnavailableError(PlatformError):
    retryable = True
    reason_code = "PLATFORM_UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        platform_code: str | None = None,
        retry_after: float | None = None,
        invoice_key: str | None = None,
    ) -> None:
        super().__init__(
            message, status=status, platform_code=platform_code, invoice_key=invoice_key
        )
        self.retry_after = retry_after


class PlatformRateLimitedError(PlatformUnavailableError):
    reason_code = "RATE_LIMITED"


class PlatformMaintenanceError(PlatformUnavailableError):
    reason_code = "MAINTENANCE"


class PlatformServerError(PlatformUnavailableError):
    reason_code = "PLATFORM_SERVER_ERROR"


class PlatformConnectError(PlatformUnavailableError):
    reason_code = "PLATFORM_UNREACHABLE"


class PlatformInDoubtError(PlatformUnavailableError):
    """The request may have been stored: resolve before anything else."""

    reason_code = "IN_DOUBT"


class LedgerError(InvoiceSyncError):
    reason_code = "LEDGER"


class LedgerUnavailableError(LedgerError):
    retryable = True


class InvalidTransitionError(LedgerError):
    pass
