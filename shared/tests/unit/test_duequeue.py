"""The dispatcher loop: works due rows until none is due, survives a failing round, stops."""

from __future__ import annotations

import asyncio

from clinic_shared.duequeue import drain, run_dispatcher


class Countdown:
    name = "countdown"

    def __init__(self, due: int, fail_first: int = 0) -> None:
        self.due, self.fail_first, self.calls = due, fail_first, 0
        self.empty = asyncio.Event()

    async def run_one(self, uow_factory: object) -> bool:
        self.calls += 1
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("database away")
        if self.due == 0:
            self.empty.set()
            return False
        self.due -= 1
        return True


async def test_drain_applies_every_due_row_of_every_job():
    jobs = [Countdown(3), Countdown(2)]
    assert await drain(jobs, None) == 5  # type: ignore[arg-type]
    assert [job.due for job in jobs] == [0, 0]


async def test_the_dispatcher_keeps_going_after_a_failed_round_and_stops_on_request():
    job = Countdown(4, fail_first=1)
    stop = asyncio.Event()
    task = asyncio.create_task(run_dispatcher([job], None, stop, poll_interval=0.01))  # type: ignore[arg-type]
    await asyncio.wait_for(job.empty.wait(), timeout=5)
    stop.set()
    assert await asyncio.wait_for(task, timeout=5) == 4
