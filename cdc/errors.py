"""CDC exceptions and the policy for each.

- `PositionPurgedError`: the committed position is no longer in the binlog. Fatal: the relay stops with the
  server's message and the remedy (`tenderhub cdc run --resnapshot`); it never loops or skips silently.
- `SourceConfigError`: the server is not set up for the relay (binlog off, wrong format, GTID off). Fatal.
- `FencedError`: another relay instance took over the shared transactional id. Fatal for this instance: exit.
- `SourceSeqRegressionError`: source_seq would go backwards (binlog numbers restarted without a new server UUID).
  Fatal: stop with the remedy (`--resnapshot` starts a new epoch).
- Transient connection errors (MySQL or Kafka restarting) are retried with backoff inside the relay.
- Rows that break the event contract are not errors: they go to the DLQ topic with the reason.
"""


class CdcError(Exception):
    """Root of every CDC error."""


class SourceConfigError(CdcError):
    """The MySQL server is not configured the way the relay needs."""


class PositionPurgedError(CdcError):
    """The binlog no longer holds the relay's committed position."""


class FencedError(CdcError):
    """A newer relay instance owns the transactional id; this one must stop publishing."""


class SourceSeqRegressionError(CdcError):
    """The next source_seq would not be higher than the last one published. Fatal: the relay stops with the remedy
    rather than publish events that every version guard downstream would silently drop."""
