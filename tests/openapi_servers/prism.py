"""Stoplight Prism serving an OpenAPI document on loopback: shared by `tests/test_openapi.py` and
`benchmarks/tokens.py` (the npm packages beside this file: `npm ci --prefix tests/openapi_servers`).

With `errors=True` (`--errors`) a request that breaks the spec (a path parameter left in the
template, a missing required query parameter, a body without a required field) gets an error
status instead of a mock, and so does a spec example that breaks its own response schema
(GitHub's `repos/get` does). Prism runs in its own process group, stopped when the context exits.

Prism spends ~20 s reading and resolving the whole GitHub spec, so `paths=` serves only the named
path templates (`subset_spec`): what a test sends requests to is all the mock needs to know.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def subset_spec(spec: Path, paths: Iterable[str], out: Path) -> Path:
    """Write to `out` the part of `spec` that serves `paths` (path templates, all their methods).

    The top-level fields stay, but webhooks (which Prism does not serve) go, and of `components`
    only the entries the kept parts reach through `$ref`s, so the subset is self-contained.

    Raises:
        KeyError: a path template is not in the spec.
        ValueError: a `$ref` points outside `#/components/`.
    """
    document: dict[str, Any] = json.loads(spec.read_text())
    components: dict[str, dict[str, Any]] = document.pop("components", {})
    document["paths"] = {path: document["paths"][path] for path in paths}
    for key in ("webhooks", "x-webhooks"):
        document.pop(key, None)
    kept: dict[str, dict[str, Any]] = {}
    pending: list[Any] = [document]
    while pending:
        for kind, name in _component_refs(pending.pop()):
            if name not in kept.setdefault(kind, {}):
                kept[kind][name] = components[kind][name]
                pending.append(components[kind][name])
    document["components"] = kept
    out.write_text(json.dumps(document))
    return out


def _component_refs(node: Any) -> Iterator[tuple[str, str]]:
    """(kind, name) of each `#/components/<kind>/<name>...` `$ref` inside `node`."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                tokens = [t.replace("~1", "/").replace("~0", "~") for t in ref.split("/")]
                if tokens[:2] != ["#", "components"] or len(tokens) < 4:
                    raise ValueError(f"$ref outside #/components/: {ref}")
                yield tokens[2], tokens[3]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


@contextmanager
def prism(
    spec: Path, log_path: Path, *, errors: bool = True, paths: Iterable[str] | None = None
) -> Iterator[str]:
    """Serve `spec` with Prism on a free loopback port; yields the base URL.

    With `paths`, Prism serves only those path templates: their subset of `spec` is written beside
    `log_path` (`<log stem>.openapi.json`) for Prism to start in seconds.

    Raises:
        PrismError: the npm packages are missing, or Prism did not come up.
    """
    if not PRISM_BIN.exists():
        raise PrismError("npm test packages missing: run `npm ci --prefix tests/openapi_servers`")
    if paths is not None:
        spec = subset_spec(spec, paths, log_path.with_suffix(".openapi.json"))
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
    """Any HTTP answer to `/zen` counts, even a 404 from a subset without that path."""
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
