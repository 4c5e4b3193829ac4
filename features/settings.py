"""Settings of the feature engine, read from the environment when asked for, never at import.

| setting | environment variable | default |
|---|---|---|
| DuckDB memory limit | ``SPOTCHECK_DUCKDB_MEMORY_LIMIT`` | ``12GB`` |
| DuckDB spill directory | ``SPOTCHECK_DUCKDB_TEMP_DIR`` | ``<system temp>/spotcheck-duckdb`` |
| DuckDB threads | ``SPOTCHECK_DUCKDB_THREADS`` | DuckDB's own (every core) |

A bad value is an error that names the variable and the value.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

from features import FeaturesError

MEMORY_LIMIT_ENV = "SPOTCHECK_DUCKDB_MEMORY_LIMIT"
TEMP_DIR_ENV = "SPOTCHECK_DUCKDB_TEMP_DIR"
THREADS_ENV = "SPOTCHECK_DUCKDB_THREADS"
DEFAULT_MEMORY_LIMIT = "12GB"
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


class SettingsError(FeaturesError):
    """An environment setting holds a value that cannot be used."""


@dataclass(frozen=True)
class DuckDBSettings:
    """How DuckDB runs: memory limit, spill directory and threads (None: DuckDB's default)."""

    memory_limit: str
    temp_dir: Path
    threads: int | None


def env_text(name: str, default: str) -> str:
    """The stripped value of an environment variable, or ``default`` when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """An integer environment variable at least ``minimum``, or ``default`` when unset.

    Raises:
        SettingsError: The value is not an integer or is below ``minimum``.
    """
    text = env_text(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r}: expected an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={text!r}: must be at least {minimum}")
    return value


def env_float(name: str, default: float) -> float:
    """A finite number from an environment variable, or ``default`` when unset.

    Raises:
        SettingsError: The value is not a finite number.
    """
    text = env_text(name, str(default))
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r}: expected a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingsError(f"{name}={text!r}: expected a finite number")
    return value


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def duckdb_settings() -> DuckDBSettings:
    """Read the DuckDB settings from the environment.

    Raises:
        SettingsError: A memory limit DuckDB cannot read (e.g. ``12GB``, ``800MiB``) or a
            thread count that is not a positive integer.
    """
    memory = env_text(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT)
    if not _MEMORY.match(memory):
        raise SettingsError(f"{MEMORY_LIMIT_ENV}={memory!r}: expected a size such as 12GB")
    temp_dir = Path(env_text(TEMP_DIR_ENV, str(Path(tempfile.gettempdir(), "spotcheck-duckdb"))))
    threads = (
        env_int(THREADS_ENV, 0, minimum=1) if os.environ.get(THREADS_ENV, "").strip() else None
    )
    return DuckDBSettings(memory, temp_dir, threads)


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    """A new UTC DuckDB connection with the memory limit, spill directory and threads set.

    Raises:
        SettingsError: A setting is unusable (see ``duckdb_settings``), or the spill
            directory cannot be created.
    """
    settings = duckdb_settings()
    try:
        settings.temp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"{TEMP_DIR_ENV}={str(settings.temp_dir)!r}: {exc.strerror}") from exc
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{settings.memory_limit}'")
    con.execute("SET temp_directory = ?", [str(settings.temp_dir)])
    # Results are re-sorted explicitly; not keeping insertion order lets DuckDB stream.
    con.execute("SET preserve_insertion_order = false")
    if settings.threads is not None:
        con.execute(f"SET threads = {settings.threads}")
    return con
