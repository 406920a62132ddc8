"""Which failures are worth trying again: a database or broker away for a moment, a lost
connection, a serialization failure or deadlock, a locked SQLite file. Consumers retry them,
dispatchers back off, and the APIs answer 503 instead of 500."""

from __future__ import annotations

from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, IntegrityError

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    OSError,
    KafkaError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError):
        return False
    if isinstance(exc, DBAPIError):
        # Lost connections, serialization failures, deadlocks, locked SQLite: try again.
        return (
            bool(exc.connection_invalidated)
            or _sqlstate(exc)
            in {
                "40001",
                "40P01",
                "55P03",
                "57P01",
                "57P03",
                "08000",
                "08003",
                "08006",
            }
            or "database is locked" in str(exc.orig)
        )
    return isinstance(exc, TRANSIENT_ERRORS)


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
