"""Stoplight Prism serving an OpenAPI document on loopback: shared by `tests/test_openapi.py` and
`benchmarks/tokens.py` (the npm packages beside this file: `npm ci --prefix tests/openapi_servers`).

With `errors=True` (`--errors`) a request that breaks the spec (a path parameter left in the
template, a missing required query parameter, a body without a required field) gets an error
status instead of a mock, and so does a spec example that breaks its own response schema
(GitHub's `repos/get` does). Prism runs in its own process group, stopped when the context exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HERE = Path(__file__).parent
GITHUB_SPEC = HERE / "node_modules/@octokit/openapi/generated/api.github.com.json"
PRISM_BIN = HERE / "node_modules/.bin/prism"
START_TIMEOUT_S = 300.0  # Prism reads and resolves the 13 MB GitHub spec first: slow on a busy machine
STOP_TIMEOUT_S = 15.0


class PrismError(RuntimeError):
    """Prism is not installed, exited, or did not start serving in time (the text has its log)."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def prism(spec: Path, log_path: Path, *, errors: bool = True) -> Iterator[str]:
    """Serve `spec` with Prism on a free loopback port; yields the base URL.

    Raises:
        PrismError: the npm packages are missing, or Prism did not come up.
    """
    if not PRISM_BIN.exists():
        raise PrismError("npm test packages missing: run `npm ci --prefix tests/openapi_servers`")
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(PRISM_BIN),
                "mock",
                *(["--errors"] if errors else []),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                str(spec),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(process, base_url, log_path)
        yield base_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_until_serving(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrismError(f"Prism exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            httpx.get(f"{base_url}/zen", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.5)
    raise PrismError(f"Prism did not serve within {START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-2000:]
