"""Run the store-feature pipeline on Spark: the same definitions, Spark SQL, no single task.

The stage SQL is the pipeline's own (``features.store.pipeline``) rendered for Spark
(``render``-ing every definition with ``features.store.dialect.SPARK``); this module only
registers the inputs Spark needs and runs it:

* the contract tables as typed temporary views (``NAME``), the same columns and types as
  DuckDB's typed views, read from Parquet files, Parquet folders or CSV;
* the snapshot keys numbered with ``monotonically_increasing_id`` (unique, computed in each
  partition) instead of a ``row_number()`` over an unpartitioned window, which Spark runs in
  a single task;
* the listing facts, the brand mentions and every stage as temporary views, joined by the
  final SELECT. Spark plans the whole query at once; nothing is collected to the driver
  but the list of brand names (thousands, for the brand-mention pattern).

pyspark is imported lazily: it is the ``spark`` extra, not a base dependency.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from features.contract.histories import (
    HistoriesError,
    find_table_source,
    missing_columns,
    missing_table,
)
from features.contract.tables import CONTRACT
from features.spec import AS_OF, KEY
from features.store.catalogue import (
    brand_mentions_sql,
    brand_pattern,
    brands_sql,
    listing_facts_sql,
)
from features.store.dialect import SPARK
from features.store.pipeline import feature_defs, final_sql, stage_sql, stages_for
from features.store.snapshots import snapshots_sql

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Spark SQL type of each contract kind (``features.contract.tables.DUCKDB_TYPES``).
SPARK_TYPES = {
    "string": "STRING",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
}


def open_histories_spark(
    spark: SparkSession, directory: str | Path, tables: Iterable[str] | None = None
) -> None:
    """Register every contract table of a histories directory as a typed temporary view.

    Timestamps are instants shown in the session's time zone, which must be UTC (naive
    Parquet timestamps are UTC by contract).

    Raises:
        HistoriesError: If the directory, a table or a contract column is missing, or the
            session's time zone is not UTC.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise HistoriesError(f"histories directory {str(directory)!r} does not exist")
    zone = spark.conf.get("spark.sql.session.timeZone")
    if zone not in ("UTC", "Etc/UTC", "Z"):
        raise HistoriesError(f"the Spark session's time zone must be UTC, not {zone!r}")
    for name in tables or tuple(CONTRACT):
        table = CONTRACT[name]
        source = find_table_source(directory, name)
        if source is None:
            raise missing_table(directory, name)
        if source.suffix == ".csv":
            raw = spark.read.option("header", True).csv(str(source))
        else:
            raw = spark.read.parquet(str(source))
        missing = [c for c in table.column_names if c not in raw.columns]
        if missing:
            raise missing_columns(name, source, missing)
        raw.createOrReplaceTempView(f"raw_{name}")
        casts = ", ".join(
            f"CAST(`{c.name}` AS {SPARK_TYPES[c.kind]}) AS {c.name}" for c in table.columns
        )
        spark.sql(f"SELECT {casts} FROM raw_{name}").createOrReplaceTempView(name)


def compute_store_features_spark(
    spark: SparkSession, keys: DataFrame, names: Iterable[str] | None = None
) -> DataFrame:
    """The store features (all groups but the link graph) for (store, as-of) rows, on Spark.

    Args:
        spark: Session with the histories' typed views (``open_histories_spark``).
        keys: Spark DataFrame with ``store_id`` and ``as_of`` (UTC); duplicates and unknown
            stores are dropped.
        names: Base features to compute (all if None); only the stages they need run.

    Returns:
        A lazy DataFrame: ``store_id``, ``as_of`` and the features in spec order, one row
        per distinct key, in no particular order.
    """
    from pyspark.sql import functions as F

    defs = feature_defs(names)
    stages = stages_for(defs, SPARK)
    distinct = keys.select(
        F.col(KEY).cast("string").alias(KEY), F.col(AS_OF).cast("timestamp").alias(AS_OF)
    ).distinct()
    # A unique id per key, computed within each partition: the stages only join on it.
    distinct.withColumn("snap_id", F.monotonically_increasing_id()).createOrReplaceTempView(
        "snapshot_keys"
    )
    spark.sql(snapshots_sql("snapshot_keys", numbered=True)).createOrReplaceTempView("snapshots")
    if any(stage.source == "listings" for stage in stages):
        brands = None
        uses_mentions = any(stage.name == "brand_mentions" for stage in stages)
        if uses_mentions:
            brands = brand_pattern([row[0] for row in spark.sql(brands_sql()).collect()])
        spark.sql(listing_facts_sql(SPARK, brands)).createOrReplaceTempView("listing_facts")
        if uses_mentions:
            mentions = spark.sql(brand_mentions_sql(SPARK, brands))
            mentions.createOrReplaceTempView("brand_mentions")
    for stage in stages:
        spark.sql(stage_sql(stage, defs, SPARK)).createOrReplaceTempView(f"stage_{stage.name}")
    return spark.sql(final_sql(SPARK, names)).drop("snap_id")
