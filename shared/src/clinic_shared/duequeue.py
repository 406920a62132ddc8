"""Durable timers: due-queues kept in the database, worked by `python -m <service> dispatcher`.

A due-queue is a table whose rows carry the instant they fall due (an offer's expiry, an
installment's due date, a reminder's send time). Nothing waits in memory: a dispatcher claims
one due row at a time in its own transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so any
number of dispatchers can run), applies it, commits, and claims the next. A dispatcher that
dies loses nothing; its uncommitted claim is released with its connection and another
dispatcher (or its restart) takes the row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from clinic_shared.errors import is_transient
from clinic_shared.logging import get_logger
from clinic_shared.uow import UnitOfWorkFactory

log = get_logger(__name__)


class DueJob(Protocol):
    name: str

    async def run_one(self, uow_factory: UnitOfWorkFactory) -> bool:
        """Claim one row that is due now, apply it and commit; False when none is due."""
        ...


async def close_jobs(jobs: Sequence[DueJob]) -> None:
    """Release what the jobs hold (a processor's HTTP client): jobs that hold any have `close`."""
    for job in jobs:
        close = getattr(job, "close", None)
        if close is not None:
            await close()


async def drain(jobs: Sequence[DueJob], uow_factory: UnitOfWorkFactory, limit: int = 1000) -> int:
    """Work every job until nothing is due (or `limit` rows each); how many rows were applied."""
    applied = 0
    for job in jobs:
        for _ in range(limit):
            if not await job.run_one(uow_factory):
                break
            applied += 1
    return applied


async def run_dispatcher(
    jobs: Sequence[DueJob],
    uow_factory: UnitOfWorkFactory,
    stop: asyncio.Event,
    *,
    poll_interval: float,
    batch: int = 100,
) -> int:
    """Work the due-queues until `stop`; between rounds with nothing due, wait `poll_interval`."""
    applied = 0
    failures = 0
    while not stop.is_set():
        try:
            done = await drain(jobs, uow_factory, batch)
            failures = 0
        except Exception as exc:
            failures += 1
            log.warning(
                "due-queue round failed",
                error=type(exc).__name__,
                transient=is_transient(exc),
                failures=failures,
            )
            done = 0
        applied += done
        if done == 0:
            wait = poll_interval * min(2**failures, 30)
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                pass
    return applied
