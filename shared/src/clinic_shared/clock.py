"""Injectable clocks: no handler or domain object reads the wall clock itself."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock the tests move by hand; time never passes on its own."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        # Elapsed time is added in UTC so that a daylight-saving change never shifts it.
        self._now = self._now + delta
        return self._now

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = instant.astimezone(UTC)


CLOCK_OFFSET_FILE_ENV = "CLINIC_CLOCK_OFFSET_FILE"
"""Names a file holding seconds to add to the wall clock: the fault and end-to-end suites move
every process's time forward with it (offers expire, installments fall due) instead of
waiting. Unset, as in production, the clock is the system clock."""


class OffsetFileClock:
    """The wall clock plus an offset read from a file, re-read whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset()

    def offset(self) -> timedelta:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return timedelta(0)
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp != self._stamp:
            text = self._path.read_text().strip()
            self._offset = timedelta(seconds=float(text or 0))
            self._stamp = stamp
        return self._offset


def write_clock_offset(path: Path, offset: timedelta) -> None:
    """Set the offset every `OffsetFileClock` on `path` adds; atomic, so a reader never sees
    half a number."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(repr(offset.total_seconds()))
    os.replace(partial, path)


def clock_from_environment() -> Clock:
    offset_file = os.environ.get(CLOCK_OFFSET_FILE_ENV)
    return OffsetFileClock(Path(offset_file)) if offset_file else SystemClock()
