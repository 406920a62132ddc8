"""The offset clock the fault and end-to-end suites use to move every process's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clinic_shared.clock import (
    CLOCK_OFFSET_FILE_ENV,
    OffsetFileClock,
    SystemClock,
    clock_from_environment,
    write_clock_offset,
)


def _close(a: datetime, b: datetime) -> bool:
    return abs(a - b) < timedelta(seconds=5)


def test_without_an_offset_file_the_clock_is_the_wall_clock(tmp_path: Path):
    clock = OffsetFileClock(tmp_path / "offset")
    assert _close(clock.now(), datetime.now(UTC))


def test_an_offset_written_later_moves_the_clock_and_a_new_one_moves_it_again(tmp_path: Path):
    path = tmp_path / "offset"
    clock = OffsetFileClock(path)
    write_clock_offset(path, timedelta(hours=2, minutes=1))
    assert _close(clock.now(), datetime.now(UTC) + timedelta(hours=2, minutes=1))
    write_clock_offset(path, timedelta(days=31))
    assert _close(clock.now(), datetime.now(UTC) + timedelta(days=31))
    assert clock.now().tzinfo is UTC


def test_the_environment_chooses_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(CLOCK_OFFSET_FILE_ENV, raising=False)
    assert isinstance(clock_from_environment(), SystemClock)
    path = tmp_path / "offset"
    write_clock_offset(path, timedelta(days=3))
    monkeypatch.setenv(CLOCK_OFFSET_FILE_ENV, str(path))
    clock = clock_from_environment()
    assert isinstance(clock, OffsetFileClock)
    assert _close(clock.now(), datetime.now(UTC) + timedelta(days=3))
