"""Sink exceptions and the policy for each.

- `TransientSinkError`: the store is unreachable, restarting or busy (connection refused/reset, timeouts, server
  selection, AutoReconnect, write-concern timeouts; Redis ConnectionError/TimeoutError/BusyLoadingError). Sinks
  retry it themselves with exponential backoff and jitter (`RetryPolicy`); it escapes only once the attempts are
  spent. Caller: keep the batch and retry later; never DLQ it and never commit past it. Every write is idempotent
  and version-guarded, so re-sending a partly written batch is safe.
- `PermanentSinkError`: the data cannot be written as it is (an invalid id, an operator-like `$` key, a document
  the server rejects). Retrying cannot help. Caller: send the offending event (`index` in the batch) to the DLQ with
  the message, then re-send the rest of the batch. `InvalidInputError` is the subclass raised before anything was
  written.
- Anything else (authentication failures, bad configuration, bugs) is not a `SinkError`: it propagates unchanged
  and should stop the worker.
- Not errors at all: an older version arriving after a newer one (`stale`) and a redelivered log event: both are
  counted in the results and logged at debug level.
"""

from __future__ import annotations

from collections.abc import Mapping


class SinkError(Exception):
    """Root of every sink error."""


class TransientSinkError(SinkError):
    """The store is unavailable for now; the same write can succeed later."""


class PermanentSinkError(SinkError):
    """The write can never succeed as it is; `index` (position in the caller's batch) and `key` name the document."""

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        key: Mapping[str, object] | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.key = dict(key) if key is not None else None
        self.code = code


class InvalidInputError(PermanentSinkError):
    """Refused by validation before any write: a bad id, a `$` key, a malformed document or Redis value."""
