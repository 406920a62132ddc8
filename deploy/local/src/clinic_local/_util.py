"""Small helpers shared by the local launchers."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private event loop in a worker thread.

    Safe to call from synchronous code whether or not the calling thread already runs an
    event loop (pytest-asyncio's session loop, for instance), and never replaces the calling
    thread's current event loop.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clinic-local") as pool:
        return pool.submit(asyncio.run, coro).result()


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes (two test runs fetching one cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def marker_matches(marker: Path, version: str) -> bool:
    """Whether a cache's completion marker names `version` (a half-done fetch has none)."""
    try:
        return marker.read_text(encoding="utf-8").strip() == version
    except FileNotFoundError:
        return False
