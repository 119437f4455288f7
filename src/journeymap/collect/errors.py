"""How the collector classifies what goes wrong with a request.

    CollectorError (JourneymapError)          status, code, message, detail, retry_after
    ├── RequestRejectedError (ValueError)     400: malformed, undecodable or oversized input
    ├── UnknownWriteKeyError (ValueError)     401: no write key, or one no source has
    ├── RateLimitedError                      429: over a source's rate or the queue's bound
    └── CollectorUnavailableError             503: transient trouble storing the batch

The server turns each into one JSON body ``{"code", "message", "detail"}`` (Segment clients log
``code``/``message``, PostHog clients ``detail``) with the error's status. Bad input is never a
5xx: every client resends 5xx forever, and a malformed batch would never get through.
"""

from __future__ import annotations

from typing import Any

from journeymap.errors import JourneymapError


class CollectorError(JourneymapError):
    """A request the collector did not accept; ``status`` is the HTTP status to answer."""

    status = 400

    def __init__(
        self, code: str, message: str, detail: Any = None, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class RequestRejectedError(CollectorError, ValueError):
    """Malformed JSON, bad compression, an oversized request, a wrong envelope: 400."""

    status = 400


class UnknownWriteKeyError(CollectorError, ValueError):
    """No write key, or a key that belongs to no source: 401."""

    status = 401


class RateLimitedError(CollectorError):
    """Over the source's rate limit or the write queue's bound: 429 with Retry-After."""

    status = 429


class CollectorUnavailableError(CollectorError):
    """The batch could not be stored right now (database locked or down): 503."""

    status = 503
