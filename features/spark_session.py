"""A Spark session for spotcheck's scale-out path (feature build and batch scoring on Spark).

Settings are read when a session is asked for, never at import; ``pyspark`` (the ``spark``
extra) is imported only then too, so the rest of the project runs without it.

| setting | environment variable | default |
|---|---|---|
| master | ``SPOTCHECK_SPARK_MASTER`` | ``local[N]``, N the cores this process may use |
| shuffle partitions | ``SPOTCHECK_SPARK_SHUFFLE_PARTITIONS`` | ``8`` |
| driver heap (in ``local`` mode, all of Spark's) | ``SPOTCHECK_SPARK_DRIVER_MEMORY`` | ``2g`` |
| Java runtime | ``JAVA_HOME`` | Debian's OpenJDK 17 (``DEBIAN_JDK17_GLOB``) when unset |

Spark's web UI and console progress bars are off and its log level is ERROR: the CLI's
output is spotcheck's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from features import FeaturesError
from features.settings import env_int, env_text

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_ENV = "SPOTCHECK_SPARK_MASTER"
SHUFFLE_PARTITIONS_ENV = "SPOTCHECK_SPARK_SHUFFLE_PARTITIONS"
# Spark's default of 200 shuffle partitions only adds task overhead for the tables one
# machine scores; a cluster sets its own.
DEFAULT_SHUFFLE_PARTITIONS = 8
DRIVER_MEMORY_ENV = "SPOTCHECK_SPARK_DRIVER_MEMORY"
DEFAULT_DRIVER_MEMORY = "2g"
# pyspark 4 runs on Java 17 or 21; the Debian package (one folder per architecture) is the
# runtime this project tests with, whatever newer Java is the machine's default.
DEBIAN_JDK17_GLOB = "usr/lib/jvm/java-17-openjdk-*"


class SparkSetupError(FeaturesError):
    """Spark cannot start: pyspark is not installed or no Java runtime is found."""


def default_master() -> str:
    """``local[N]`` with N the cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"local[{cores or 1}]"


def java_home() -> Path:
    """``JAVA_HOME`` if set, else Debian's JDK 17.

    Raises:
        SparkSetupError: Neither names an existing directory.
    """
    value = os.environ.get("JAVA_HOME", "").strip()
    debian = sorted(Path("/").glob(DEBIAN_JDK17_GLOB)) or [Path("/" + DEBIAN_JDK17_GLOB)]
    home = Path(value) if value else debian[0]
    if not (home / "bin" / "java").exists():
        source = "JAVA_HOME" if value else "the default Java runtime"
        raise SparkSetupError(
            f"{source} {str(home)!r} has no bin/java: install a Java 17 runtime "
            "(Debian: openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return home


def spark_session(
    master: str | None = None,
    app_name: str = "spotcheck",
    shuffle_partitions: int | None = None,
    conf: Mapping[str, str] | None = None,
    driver_memory: str | None = None,
) -> SparkSession:
    """Get or start a Spark session with spotcheck's settings.

    Args:
        master: Spark master URL; default ``SPOTCHECK_SPARK_MASTER`` or ``local[N]``.
        app_name: The application name Spark shows.
        shuffle_partitions: ``spark.sql.shuffle.partitions``; default
            ``SPOTCHECK_SPARK_SHUFFLE_PARTITIONS`` or 8.
        conf: More Spark settings; they win over the ones above.
        driver_memory: ``spark.driver.memory``; default ``SPOTCHECK_SPARK_DRIVER_MEMORY`` or
            2g. Only a new session (a new JVM) takes it.

    Returns:
        The session (an existing one is reused with its own master; the SQL settings above
        are applied to it).

    Raises:
        SparkSetupError: pyspark is missing, or there is no Java runtime.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkSetupError(
            "Spark needs the spark extra: uv sync --extra spark (pyspark and a Java 17 runtime)"
        ) from exc
    # The JVM that pyspark launches finds its runtime through JAVA_HOME.
    os.environ["JAVA_HOME"] = str(java_home())
    # Python workers run this interpreter (pyspark reads only the variable, not the
    # spark.pyspark.python setting, when the session starts in-process), so they see the
    # same installed packages; a user's choice wins.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {
        # Timestamps are UTC everywhere in spotcheck; Spark would use the machine's zone.
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": driver_memory or env_text(DRIVER_MEMORY_ENV, DEFAULT_DRIVER_MEMORY),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(
            shuffle_partitions or env_int(SHUFFLE_PARTITIONS_ENV, DEFAULT_SHUFFLE_PARTITIONS)
        ),
        **(conf or {}),
    }
    builder = SparkSession.builder.master(master or env_text(MASTER_ENV, default_master()))
    builder = builder.appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    for key, value in settings.items():
        # getOrCreate hands back a running session as it is: set the SQL settings on it.
        if key.startswith("spark.sql."):
            session.conf.set(key, value)
    session.sparkContext.setLogLevel("ERROR")
    return session
