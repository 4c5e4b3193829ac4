"""Helpers of the service tests: ``spotcheck serve`` for real, requests, snapshot rows.

The server runs on a free 127.0.0.1 port, is ready when ``/readyz`` answers 200, and stops
with SIGTERM to its process group (SIGKILL only if it does not stop in time).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

TOKEN = "test-token-0123456789"
START_TIMEOUT = 120.0


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(base: str, path: str, body: object = None, token: str | None = TOKEN, raw=None,
         timeout: float = 30):  # fmt: skip
    """``(status, parsed JSON or text)`` of a GET (no body) or POST to the server."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def spotcheck_command() -> str:
    """The ``spotcheck`` script of this environment."""
    return str(Path(sys.executable).with_name("spotcheck"))


@dataclass
class Server:
    """A running ``spotcheck serve``: its base URL, process and log."""

    base: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the server's process group, SIGKILL if it does not stop in time."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


def start_server(
    args: list[str], env: dict[str, str], log: Path, command: list[str] | None = None
) -> Server:
    """``spotcheck serve ARGS`` (or ``COMMAND ARGS``) on a free port, once ``/readyz`` is 200.

    Raises:
        pytest.fail.Exception: The server died or was not ready in ``START_TIMEOUT``.
    """
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*(command or [spotcheck_command(), "serve"]), "--port", str(port), *args],
            env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while _ready(server.base) != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"server did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return server


def _ready(base: str) -> int | None:
    try:
        return http(base, "/readyz", token=None, timeout=5)[0]
    except OSError:
        return None


def snapshot_stores(snapshot: Path, n: int, start: int = 0) -> list[dict]:
    """``n`` stores of the snapshot as a /score request sends them (JSON values)."""
    import pandas as pd

    names = [f["name"] for f in json.loads(Path(f"{snapshot}.spec.json").read_text())["features"]]
    table = pd.read_parquet(snapshot).iloc[start : start + n]
    rows = json.loads(table[["store_id", *names]].to_json(orient="records"))
    return [{"store_id": r.pop("store_id"), "features": r} for r in rows]
