"""A throwaway PostgreSQL 15 server for tests: initdb into a temporary directory, run, remove.

The server listens on 127.0.0.1 on a free port (and a Unix socket in its own directory), trusts
every local connection and is tuned for speed, not durability (no fsync). ``initdb`` refuses to
run as root, so as root the binaries run as the ``postgres`` system user, which then owns the
temporary directory. Missing binaries are an error, never a skip: CI must run these tests
(``scripts/ensure_system_deps.sh`` installs Debian's ``postgresql-15``).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

VERSION = "15"
# Debian's layout; /usr/local/bin or PATH may hold links to the same binaries.
DEBIAN_BIN = Path(f"/usr/lib/postgresql/{VERSION}/bin")
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 30


class PostgresUnavailable(RuntimeError):
    """PostgreSQL 15 cannot be started here (the message says what is missing)."""


def find_bin() -> Path:
    """Directory holding PostgreSQL 15's ``initdb``, ``pg_ctl`` and ``postgres``.

    Raises:
        PostgresUnavailable: No PostgreSQL 15 binaries were found.
    """
    candidates = [DEBIAN_BIN]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise PostgresUnavailable(
        f"PostgreSQL {VERSION} binaries (initdb, pg_ctl, postgres) not found in {DEBIAN_BIN} "
        "nor on PATH: install Debian's postgresql-15 (bash scripts/ensure_system_deps.sh)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running throwaway server; ``stop`` ends it and removes its files."""

    root: Path
    port: int
    bin_dir: Path
    as_user: str | None
    databases: int = 0

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    def url(self, database: str, driver: str = "postgresql") -> str:
        """SQLAlchemy URL of ``database`` (``driver`` e.g. ``postgresql+psycopg2``)."""
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """Create a new empty database named from ``prefix`` and return its name."""
        import psycopg2

        self.databases += 1
        name = re.sub(r"[^a-z0-9_]+", "_", prefix.lower())[:40] + f"_{self.databases}"
        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres"
        )
        try:
            # CREATE DATABASE cannot run inside a transaction.
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return name

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        try:
            _run(self, "pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", timeout=30)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(
    server: PostgresServer, tool: str, *args: str, timeout: float
) -> subprocess.CompletedProcess:
    command = [str(server.bin_dir / tool), *args]
    if server.as_user:
        command = ["runuser", "-u", server.as_user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise PostgresUnavailable(
            f"{tool} {' '.join(args[:2])} failed (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result


def start() -> PostgresServer:
    """initdb a fresh cluster in a temporary directory and start it on a free port.

    Raises:
        PostgresUnavailable: Binaries or the ``postgres`` user are missing, or the server
            did not start (the message carries its log).
    """
    bin_dir = find_bin()
    as_user = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root and there is no '{SYSTEM_USER}' system user to run initdb as "
                "(initdb refuses root): install Debian's postgresql-15, which creates it"
            ) from None
        as_user = SYSTEM_USER
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="spotcheck-pg-"))
    if as_user:
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PostgresServer(root, free_port(), bin_dir, as_user)
    try:
        _run(
            server, "initdb", "-D", str(server.data_dir), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions", timeout=60,
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} "
            # Throwaway data: durability only costs time.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = root / "server.log"
        try:
            _run(
                server, "pg_ctl", "start", "-D", str(server.data_dir), "-o", options,
                "-l", str(log), "-w", "-t", str(START_TIMEOUT_SECONDS),
                timeout=START_TIMEOUT_SECONDS + 10,
            )  # fmt: skip
        except PostgresUnavailable as exc:
            text = log.read_text()[-3000:] if log.exists() else "(no log)"
            raise PostgresUnavailable(f"{exc}\nserver log:\n{text}") from exc
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server
