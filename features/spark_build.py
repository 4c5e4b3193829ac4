"""Feature tables on Spark: the same rows and columns as ``features.build``, from Spark SQL.

``build_feature_table_spark`` (every store open before an as-of time) and
``features_for_keys_spark`` (given (store, as-of) keys, e.g. one per label) run the whole
build on Spark: the contract tables as typed views, the store features
(``features.store.spark_engine``), the links and the link-graph features
(``features.links.spark``), the linked stores' rows the neighbour aggregates need, and the
result written as a folder of Parquet parts (``write_feature_table_spark``). DuckDB stays
the reference: the equivalence tests compare every value.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from features import FeaturesError
from features.build import NEIGHBOUR_COLUMNS, feature_spec, to_utc_timestamp
from features.spec import AS_OF, KEY, FeatureSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def build_feature_table_spark(
    spark: SparkSession, histories: str | Path, as_of: str | None = None
) -> tuple[DataFrame, FeatureSpec]:
    """One row per store open before ``as_of`` (default: the end of the histories).

    Returns:
        A lazy DataFrame (``store_id``, ``as_of``, then ``spec.names``) and the spec.
    """
    from pyspark.sql import functions as F

    from features.store.spark_engine import open_histories_spark

    open_histories_spark(spark, histories)
    when = _default_as_of(spark) if as_of is None else to_utc_timestamp(as_of)
    at = F.lit(when.to_pydatetime()).cast("timestamp")
    keys = spark.table("stores").where(F.col("opened_at") < at).select(KEY, at.alias(AS_OF))
    return _build(spark, keys)


def features_for_keys_spark(
    spark: SparkSession, histories: str | Path, keys: DataFrame
) -> tuple[DataFrame, FeatureSpec]:
    """Features for these (store, as-of) keys, each from events before its as-of time.

    Args:
        spark: The session.
        histories: The store-histories directory.
        keys: ``store_id``, ``as_of`` (UTC) rows, at most one per key, stores open before.
    """
    from features.store.spark_engine import open_histories_spark

    open_histories_spark(spark, histories)
    return _build(spark, keys)


def training_keys_spark(spark: SparkSession, histories: str | Path) -> DataFrame:
    """One key per label, as of its ``labeled_at`` (the training table's rows)."""
    from features.store.spark_engine import open_histories_spark

    open_histories_spark(spark, histories, tables=("labels",))
    return spark.sql(f"SELECT {KEY}, labeled_at AS {AS_OF} FROM labels")


def _default_as_of(spark: SparkSession):
    """1 microsecond after the latest event, delivery or opening (``build.default_as_of``)."""
    import pandas as pd

    from features.contract.tables import EVENT_TIME_COLUMNS

    columns = [*EVENT_TIME_COLUMNS.items(), ("orders", "delivered_at"), ("stores", "opened_at")]
    parts = " UNION ALL ".join(f"SELECT max({c}) AS t FROM {t}" for t, c in columns)
    latest = spark.sql(f"SELECT max(t) FROM ({parts})").collect()[0][0]
    if latest is None:
        raise FeaturesError("the histories have no stores and no events")
    return to_utc_timestamp(pd.Timestamp(latest)) + pd.Timedelta(microseconds=1)


def _build(spark: SparkSession, keys: DataFrame) -> tuple[DataFrame, FeatureSpec]:
    """Store features for the keys and their linked stores, then the link features."""
    from pyspark.sql import functions as F

    from features.links.spark import link_features_spark, login_links_spark, valid_links
    from features.store.spark_engine import compute_store_features_spark

    keys = keys.select(F.col(KEY).cast("string"), F.col(AS_OF).cast("timestamp")).localCheckpoint()
    links = login_links_spark(spark).localCheckpoint()
    # The linked stores' rows at the same time, for the neighbour aggregates.
    neighbours = valid_links(keys, links).select(F.col("nb").alias(KEY), AS_OF)
    all_keys = keys.unionByName(neighbours).distinct()
    base = compute_store_features_spark(spark, all_keys).localCheckpoint()
    labels = spark.table("labels").select(KEY, "labeled_at", "is_counterfeit")
    with_links = link_features_spark(base, links, labels, NEIGHBOUR_COLUMNS)
    spec = feature_spec()
    table = with_links.join(keys, [KEY, AS_OF], "left_semi")
    return table.select(KEY, AS_OF, *spec.names), spec


def write_feature_table_spark(table: DataFrame, spec: FeatureSpec, out: str | Path) -> Path:
    """Write the table as a folder of Parquet parts with its spec beside it, atomically.

    Written into a temporary folder next to ``out`` and renamed into place; the spec goes
    to ``OUT.spec.json`` (``features.build.spec_path``).

    Returns:
        The path of the spec file.
    """
    from features.build import spec_path

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FeaturesError(f"{out} exists and is not a folder")
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    table.write.parquet(str(staging))
    spec_out = spec_path(out)
    spec_tmp = spec_out.with_name(f".{spec_out.name}.tmp")
    spec_tmp.write_text(spec.to_json() + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    spec_tmp.replace(spec_out)
    return spec_out
