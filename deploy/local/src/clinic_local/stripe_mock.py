"""stripe-mock (Go module ``github.com/stripe/stripe-mock``), built once from the Go module proxy.

stripe-mock checks each request against Stripe's OpenAPI spec and answers with hard-coded
fixtures. It is stateless: it proves that our requests are well formed, not what Stripe would
decide (a confirmed PaymentIntent comes back as ``requires_payment_method``, declines cannot be
provoked). Pinned to v0.203.0, the newest on the Go module proxy when pinned; the binary reports
``master`` for ``-version``, so the cache marker records the version instead.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from clinic_local._util import file_lock, log_tail, marker_matches

DEFAULT_STRIPE_MOCK_VERSION = "v0.203.0"
MODULE = "github.com/stripe/stripe-mock"
TEST_API_KEY = "sk_test_123"
URL_ENVS = ("CLINIC_TEST_STRIPE_MOCK_URL", "STRIPE_MOCK_URL")
_MARKER = ".complete"
_LISTENING = re.compile(r"Listening for HTTP at address: (\S+)")


class StripeMockLaunchError(RuntimeError):
    """stripe-mock could not be built or started."""


def external_url() -> str | None:
    """The URL of an existing server named in the environment: it wins over a local launch."""
    for name in URL_ENVS:
        value = os.environ.get(name)
        if value:
            return value.rstrip("/")
    return None


# --------------------------------------------------------------------------- binary


def cache_dir(version: str = DEFAULT_STRIPE_MOCK_VERSION) -> Path:
    """Where the binary lives: ``$CLINIC_STRIPE_MOCK_CACHE`` or ~/.cache/clinic/stripe-mock-V."""
    override = os.environ.get("CLINIC_STRIPE_MOCK_CACHE")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "clinic" / f"stripe-mock-{version}"


def _go() -> str:
    found = shutil.which("go")
    if found:
        return found
    if Path("/usr/local/go/bin/go").is_file():
        return "/usr/local/go/bin/go"
    raise StripeMockLaunchError(
        "`go` is not on PATH: Go 1.22+ is needed to build stripe-mock "
        f"(or set {URL_ENVS[0]} to a running stripe-mock)"
    )


def ensure_binary(version: str = DEFAULT_STRIPE_MOCK_VERSION) -> Path:
    """Build the binary once (idempotent, safe to interrupt); return its path.

    ``go install`` writes into a temporary GOBIN that is renamed into place, and a marker naming
    the version is written last; concurrent callers serialise on a lock file.
    """
    root = cache_dir(version)
    binary = root / "bin" / "stripe-mock"
    marker = root / _MARKER
    if marker_matches(marker, version) and binary.is_file():
        return binary
    with file_lock(root.parent / f".{root.name}.lock"):
        if marker_matches(marker, version) and binary.is_file():
            return binary
        root.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        for stale in root.glob("bin.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f"bin.tmp-{os.getpid()}"
        env = {**os.environ, "GOBIN": str(tmp), "GOFLAGS": "-mod=mod"}
        result = subprocess.run(
            [_go(), "install", f"{MODULE}@{version}"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if result.returncode != 0 or not (tmp / "stripe-mock").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            raise StripeMockLaunchError(
                f"go install {MODULE}@{version} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        if binary.parent.exists():
            shutil.rmtree(binary.parent)
        tmp.rename(binary.parent)
        marker.write_text(version, encoding="utf-8")
    return binary


# --------------------------------------------------------------------------- server


def _answers(url: str) -> bool:
    try:
        response = httpx.get(
            f"{url}/v1/customers",
            headers={"Authorization": f"Bearer {TEST_API_KEY}"},
            timeout=2.0,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


class StripeMock:
    """A stripe-mock process on loopback ports chosen by the kernel (read back from its log)."""

    def __init__(
        self, log_dir: Path | None = None, *, version: str = DEFAULT_STRIPE_MOCK_VERSION
    ) -> None:
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="clinic-stripe-mock-")).resolve()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.version = version
        self._url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)

    @property
    def log_file(self) -> Path:
        return self.log_dir / "stripe-mock.out"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the SDK's ``api`` base address."""
        if self._url is None:
            raise StripeMockLaunchError("stripe-mock is not running")
        return self._url

    def start(self, timeout: float = 120) -> None:
        """Build the binary if needed, start it and wait until it answers an API request."""
        if self.is_running:
            return
        deadline = time.monotonic() + timeout
        binary = ensure_binary(self.version)
        self.log_file.unlink(missing_ok=True)
        with self.log_file.open("ab") as out:
            # port 0 everywhere: the HTTPS listener would otherwise take :12112 on all interfaces
            self._proc = subprocess.Popen(
                [str(binary), "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.log_dir,
            )
        self._wait_ready(deadline)

    def _wait_ready(self, deadline: float) -> None:
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise StripeMockLaunchError(
                    f"stripe-mock exited with {code} during start-up; log {self.log_file}:\n"
                    f"{log_tail(self.log_file)}"
                )
            if self._url is None:
                found = _LISTENING.search(self.log_file.read_text(errors="replace"))
                if found:
                    self._url = f"http://{found.group(1)}"
            if self._url is not None and _answers(self._url):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise StripeMockLaunchError(
                    f"stripe-mock did not answer in time; log {self.log_file}:\n"
                    f"{log_tail(self.log_file)}"
                )
            time.sleep(0.05)  # polling interval, the deadline above bounds the wait

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._proc = None
        self._url = None

    def __enter__(self) -> StripeMock:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self._url if self.is_running else "stopped"
        return f"StripeMock({self.version}, {state})"


def main(argv: list[str] | None = None) -> None:
    """`python -m clinic_local.stripe_mock fetch`: build the binary into the cache once."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m clinic_local.stripe_mock")
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("--version", default=DEFAULT_STRIPE_MOCK_VERSION)
    args = parser.parse_args(argv)
    url = external_url()
    if url:
        print(f"stripe-mock: using {url} from the environment, nothing fetched")
        return
    print(f"stripe-mock {args.version} in {ensure_binary(args.version)}")


if __name__ == "__main__":
    main()
