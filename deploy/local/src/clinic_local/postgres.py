"""Throwaway PostgreSQL clusters from Debian's ``postgresql`` package.

initdb refuses to run as root, so when this process is root the server programs run as the
``postgres`` system user (through ``runuser``) on a data directory chowned to that user.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from clinic_local._util import free_port, log_tail, run_sync

PG_ROOT = Path("/usr/lib/postgresql")
DEFAULT_EXTENSIONS: tuple[str, ...] = ("btree_gist",)
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresLaunchError(RuntimeError):
    """PostgreSQL could not be installed, initialised or started."""


# --------------------------------------------------------------------------- binaries


def _versions() -> list[Path]:
    if not PG_ROOT.is_dir():
        return []
    dirs = [d / "bin" for d in PG_ROOT.iterdir() if (d / "bin" / "initdb").is_file()]
    return sorted(dirs, key=lambda d: _version_key(d.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def find_pg_bin(install: bool = True) -> Path:
    """``/usr/lib/postgresql/<newest>/bin``; apt-get installs the package when root."""
    found = _versions()
    if found:
        return found[-1]
    if not install or os.geteuid() != 0:
        raise PostgresLaunchError(
            f"no PostgreSQL under {PG_ROOT}: install Debian's package "
            "(`sudo apt-get install -y postgresql postgresql-contrib`) or set "
            "CLINIC_TEST_POSTGRES_DSN to an existing server"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "postgresql", "postgresql-contrib"],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise PostgresLaunchError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return find_pg_bin(install=False)


# --------------------------------------------------------------------------- DSNs and databases


def _quote_ident(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def with_database(raw_dsn: str, dbname: str) -> str:
    """The same server DSN pointing at another database, as ``postgresql://``."""
    parts = urlsplit(raw_dsn)
    return urlunsplit(("postgresql", parts.netloc, f"/{dbname}", parts.query, ""))


def to_sqlalchemy(raw_dsn: str) -> str:
    """``postgresql://...`` → ``postgresql+asyncpg://...``."""
    return "postgresql+asyncpg://" + raw_dsn.split("://", 1)[1]


def to_raw_dsn(dsn: str) -> str:
    """``postgresql+asyncpg://...`` → ``postgresql://...`` (what asyncpg.connect takes)."""
    return "postgresql://" + dsn.split("://", 1)[1]


async def create_database_async(
    admin_dsn: str, name: str, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
) -> str:
    """(Re)create database ``name`` on the server of ``admin_dsn``; return its raw DSN."""
    quoted = _quote_ident(name)
    conn = await asyncpg.connect(admin_dsn, timeout=30)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()
    target = with_database(admin_dsn, name)
    conn = await asyncpg.connect(target, timeout=30)
    try:
        for ext in extensions:
            await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {_quote_ident(ext)}")
    finally:
        await conn.close()
    return target


async def drop_database_async(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=30)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


async def _flush_wal(raw_dsn: str) -> None:
    conn = await asyncpg.connect(raw_dsn, timeout=5)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")
            # a commit only waits for the WAL flush when the transaction wrote WAL
            await conn.fetchval("SELECT pg_logical_emit_message(true, 'clinic_local', 'flush')")
    finally:
        await conn.close()


class _DatabaseApi:
    """``create_database``/``drop_database``/``dsn``/``raw_dsn`` over ``raw_dsn``."""

    @property
    def is_running(self) -> bool:
        return True

    def raw_dsn(self, dbname: str = "postgres") -> str:
        raise NotImplementedError

    def dsn(self, dbname: str = "postgres") -> str:
        return to_sqlalchemy(self.raw_dsn(dbname))

    def create_database(self, name: str, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> str:
        """Drop-if-exists, create, add ``extensions``; return the SQLAlchemy (asyncpg) DSN."""
        run_sync(create_database_async(self.raw_dsn("postgres"), name, extensions))
        return self.dsn(name)

    async def create_database_async(
        self, name: str, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    ) -> str:
        await create_database_async(self.raw_dsn("postgres"), name, extensions)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        run_sync(drop_database_async(self.raw_dsn("postgres"), name))


class ExternalPostgres(_DatabaseApi):
    """An existing server given by a DSN such as ``postgresql://user@host:5432/postgres``."""

    def __init__(self, admin_dsn: str) -> None:
        scheme = urlsplit(admin_dsn).scheme
        if not scheme.startswith("postgres"):
            raise ValueError(f"not a PostgreSQL DSN: {scheme}://...")
        self.admin_dsn = admin_dsn

    def raw_dsn(self, dbname: str = "postgres") -> str:
        return with_database(self.admin_dsn, dbname)

    def __repr__(self) -> str:
        parts = urlsplit(self.admin_dsn)
        return f"ExternalPostgres({parts.hostname}:{parts.port})"


# --------------------------------------------------------------------------- cluster


class PostgresCluster(_DatabaseApi):
    """A private PostgreSQL server on a free loopback port, data in a temporary directory."""

    def __init__(self, base_dir: Path | None = None, port: int | None = None) -> None:
        self._owns_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="clinic-pg-")).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.bin_dir: Path | None = None
        self._running = False
        atexit.register(self._at_exit)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def is_running(self) -> bool:
        return self._running

    def raw_dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    # ---- running the server programs
    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        return ["runuser", "-u", "postgres", "--", *cmd]

    def _pg(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.bin_dir is None:
            self.bin_dir = find_pg_bin()
        cmd = self._as_owner([str(self.bin_dir / program), *args])
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.base_dir, check=False)
        if check and result.returncode != 0:
            raise PostgresLaunchError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}\n"
                f"server log {self.log_file}:\n{log_tail(self.log_file)}"
            )
        return result

    def _give_to_postgres_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            user = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresLaunchError("running as root but there is no `postgres` user") from exc
        for path in [self.base_dir, *self.base_dir.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)

    def _initdb(self) -> None:
        self.socket_dir.mkdir(exist_ok=True)
        self._give_to_postgres_user()
        self._pg(
            "initdb",
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--no-sync",
        )
        settings = {
            **SERVER_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
        }
        conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as handle:
            handle.write("\n# clinic_local\n" + conf)

    # ---- lifecycle
    def start(self, timeout: float = 60) -> None:
        """initdb on first use, then start the server and wait until it accepts connections."""
        if self._running:
            return
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        )
        self._running = True

    def stop(self, timeout: float = 60) -> None:
        """Fast shutdown (the data stays; ``start()`` again serves it)."""
        self._shutdown("fast", timeout)

    def kill(self) -> None:
        """Immediate shutdown: like a crash, the next ``start()`` runs crash recovery.

        The cluster runs with ``synchronous_commit=off`` for speed, so the WAL is flushed first
        (one synchronous commit flushes all earlier WAL): commits acknowledged before the kill
        survive it, as they would on a production server with synchronous commit.
        """
        if self._running:
            with contextlib.suppress(Exception):
                run_sync(_flush_wal(self.raw_dsn("postgres")))
        self._shutdown("immediate", 30)

    def _shutdown(self, mode: str, timeout: float) -> None:
        if not (self.data_dir / "postmaster.pid").is_file():
            self._running = False
            return
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(int(timeout)),
            "stop",
            check=False,
        )
        self._running = False

    def cleanup(self) -> None:
        """Stop the server and remove the temporary directory (when this object made it)."""
        if self._running:
            self.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):
            if self._running:
                self.kill()

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.cleanup()

    def __repr__(self) -> str:
        return f"PostgresCluster(127.0.0.1:{self.port}, {self.base_dir})"
