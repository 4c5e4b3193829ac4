"""A Spark session set up the way spotcheck's Spark SQL expects: UTC, Java 17, quiet.

pyspark is the ``spark`` extra; it is imported when a session is asked for, never at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Debian's OpenJDK 17 (``openjdk-17-jre-headless``, one folder per architecture): what Spark
# 4 is tested with here, whatever newer Java is the machine's default.
DEBIAN_JAVA_17 = "/usr/lib/jvm/java-17-openjdk-*"


def spark_session(
    master: str | None = None,
    shuffle_partitions: int | None = None,
    driver_memory: str | None = None,
) -> SparkSession:
    """The active Spark session, or a new one on ``master``.

    Args:
        master: Spark master URL; ``SPOTCHECK_SPARK_MASTER`` or ``local[2]`` if None.
        shuffle_partitions: Partitions after a shuffle; Spark's 200 are far too many for a
            small local job, so ``4 x`` the local cores unless given.
        driver_memory: The driver JVM's heap (in ``local`` mode, all of Spark's);
            ``SPOTCHECK_SPARK_DRIVER_MEMORY`` or ``2g`` if None. Only a new session uses it.

    Returns:
        A session with time zone UTC (the contract's timestamps are UTC instants).
    """
    from pyspark.sql import SparkSession

    debian = sorted(Path("/").glob(DEBIAN_JAVA_17.lstrip("/")))
    if "JAVA_HOME" not in os.environ and debian:
        os.environ["JAVA_HOME"] = str(debian[0])
    master = master or os.environ.get("SPOTCHECK_SPARK_MASTER", "local[2]")
    partitions = shuffle_partitions or 4 * (os.cpu_count() or 2)
    memory = driver_memory or os.environ.get("SPOTCHECK_SPARK_DRIVER_MEMORY", "2g")
    session = (
        SparkSession.builder.master(master)
        .appName("spotcheck")
        .config("spark.driver.memory", memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session
