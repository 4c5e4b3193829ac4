"""Batch scoring on Spark (``spotcheck score --engine spark``): the local batch file, at scale.

A feature table (a Parquet file or directory) is scored with ``mlflow.pyfunc.spark_udf`` on the
registered model, run by this interpreter's packages (``env_manager="local"``). The model's
output arrives as one struct column and is flattened into the columns, order and types of the
local batch file (``serving.batch.OUTPUT_COLUMNS``); the rank, which the model does not
compute, is added here in the local order (score, then raw score, descending; then store id),
without gathering the table on one partition. The result is a Parquet directory written under
a temporary name and renamed into place.

The model's signature declares each ``int`` feature as ``long``, and MLflow's input check
refuses a long column with missing values (pandas holds them as float). Such a table is refused
here with the columns named; ``--engine local`` scores it (missing is missing to LightGBM).
pyspark is imported inside the functions: it is the optional ``spark`` extra.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.scoring.encoding import check_columns
from features.scoring.model import OUTPUT_COLUMNS as MODEL_COLUMNS
from features.scoring.model import scorer_of
from features.scoring.reasons import MITIGATING_REASONS, RISK_REASONS
from features.spec import KEY, FeatureSpec
from serving import ServingError
from serving.batch import OUTPUT_COLUMNS

if TYPE_CHECKING:
    import mlflow.pyfunc
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

# Spark SQL type of each spec dtype: the types the model signature declares
# (features.scoring.model.SIGNATURE_TYPES: double, long, boolean, string).
SPARK_TYPES = {"float": "double", "int": "bigint", "bool": "boolean", "category": "string"}
ORDER_COLUMNS = ("score", "raw_score", KEY)  # descending, descending, ascending


@dataclass(frozen=True)
class SparkScored:
    """What a Spark scoring run wrote.

    Attributes:
        path: The Parquet directory.
        rows: Stores scored.
        head: The riskiest stores (up to the ``top`` asked for), in rank order.
    """

    path: Path
    rows: int
    head: pd.DataFrame


def score_table_on_spark(
    spark: SparkSession,
    model: mlflow.pyfunc.PyFuncModel,
    model_uri: str,
    features: str | Path,
    out: str | Path,
    risk_k: int = RISK_REASONS,
    mitigating_k: int = MITIGATING_REASONS,
    top: int = 0,
) -> SparkScored:
    """Score a Parquet feature table on Spark and write the ranked stores as Parquet.

    Args:
        spark: The session (``features.spark_session.spark_session``).
        model: The model loaded on the driver (``serving.batch.load_model``), for its
            FeatureSpec and signature.
        model_uri: The same model's URI, which the Spark workers load.
        features: Parquet file or directory with ``store_id`` and the model's features.
        out: Output directory; replaced whole if it exists.
        risk_k: Risk-raising reasons per store at most.
        mitigating_k: Mitigating reasons per store at most.
        top: Riskiest stores to read back for printing (0: none).

    Returns:
        The output path, the number of stores and the head of the queue.

    Raises:
        ServingError: The table is missing or lacks a column, an ``int`` feature has missing
            or fractional values, or Spark fails.
    """
    import mlflow.pyfunc

    out = Path(out)
    if out.suffix.lower() == ".csv":
        raise ServingError(f"--out {str(out)!r}: Spark writes a Parquet directory, not CSV")
    spec = scorer_of(model).spec
    try:
        table = _read_features(spark, Path(features), spec)
        udf = mlflow.pyfunc.spark_udf(
            spark,
            model_uri,
            result_type=output_struct(model),
            env_manager="local",
            params={"risk_reasons": risk_k, "mitigating_reasons": mitigating_k},
        )
        scored = table.select(KEY, udf(*spec.names).alias("_out")).select(KEY, "_out.*")
        return _write_ranked(spark, scored, out, top)
    except Exception as exc:
        # Spark fails with pyspark's exceptions or, for JVM errors it does not convert, with
        # py4j's (pyspark's own dependency, not imported here); anything else is a bug.
        if not type(exc).__module__.startswith(("pyspark.", "py4j.")):
            raise
        raise ServingError(f"Spark scoring of {features} failed: {_first_line(exc)}") from exc


def output_struct(model: mlflow.pyfunc.PyFuncModel) -> StructType:
    """The Spark struct of the model's ``predict`` output, from its signature.

    Fields are nullable: Spark compares the struct with what the pandas UDF returns, whose
    fields always are.

    Raises:
        ServingError: The signature does not declare spotcheck's output columns.
    """
    from pyspark.sql.types import StructField, StructType

    signature = model.metadata.signature
    outputs = signature.outputs.inputs if signature and signature.outputs else []
    names = [column.name for column in outputs]
    if names != MODEL_COLUMNS:
        raise ServingError(
            f"the model's signature declares output columns {names}, expected {MODEL_COLUMNS}"
        )
    return StructType([StructField(col.name, col.type.to_spark(), True) for col in outputs])


def _read_features(spark: SparkSession, path: Path, spec: FeatureSpec) -> DataFrame:
    """``store_id`` and the model's features, cast to the signature's types, in spec order.

    Raises:
        ServingError: No such table, no ``store_id``, a missing feature column, empty or
            repeated store ids, or an ``int`` feature with missing or fractional values.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import FractionalType

    if not path.exists():
        raise ServingError(f"feature table {str(path)!r} does not exist")
    table = spark.read.parquet(str(path))
    if KEY not in table.columns:
        raise ServingError(f"the feature table {str(path)!r} has no {KEY!r} column")
    # The same message as local scoring, naming the columns.
    check_columns(pd.DataFrame(columns=table.columns), spec)
    types = {field.name: field.dataType for field in table.schema.fields}
    # One pass over the keys and int columns. MLflow refuses missing values in a long input,
    # and a cast to long would silently truncate 2.5.
    checks = [
        F.count_if(F.col(KEY).isNull()).alias("empty"),
        (F.count("*") - F.count_distinct(KEY)).alias("repeated"),
    ]
    for f in spec:
        if f.dtype == "int":
            value = F.col(f.name).cast("double")
            checks.append(F.count_if(value.isNull() | F.isnan(value)).alias(f"missing:{f.name}"))
            if isinstance(types[f.name], FractionalType):
                checks.append(F.count_if(value != F.floor(value)).alias(f"fraction:{f.name}"))
    _refuse_bad_rows(table.select(*checks).first().asDict(), path)
    return table.select(
        F.col(KEY), *(F.col(f.name).cast(SPARK_TYPES[f.dtype]).alias(f.name) for f in spec)
    )


def _refuse_bad_rows(counts: dict[str, int], path: Path) -> None:
    """Raise naming what is wrong, from ``_read_features``' counts (``kind:feature``)."""
    where = f"feature table {str(path)!r}"
    empty, repeated = counts.pop("empty"), counts.pop("repeated")
    if empty:
        raise ServingError(f"{where}: {empty:,} rows have an empty {KEY}")
    if repeated:
        raise ServingError(
            f"{where}: {KEY} repeats ({repeated:,} extra rows); Spark scoring takes "
            "one row per store (--engine local scores each store's latest as_of row)"
        )
    problems = []
    for kind, why in (
        ("missing", "missing values, which MLflow's Spark UDF cannot pass for the long type "
         "the model's signature declares (--engine local scores them)"),
        ("fraction", "fractional values"),
    ):  # fmt: skip
        bad = [
            f"{key.split(':', 1)[1]} ({n:,} rows)"
            for key, n in counts.items()
            if n and key.startswith(f"{kind}:")
        ]
        if bad:
            problems.append(f"int feature(s) {', '.join(bad)} have {why}")
    if problems:
        raise ServingError(f"{where}: {'; '.join(problems)}")


def _write_ranked(spark: SparkSession, scored: DataFrame, out: Path, top: int) -> SparkScored:
    """Rank ``scored`` (rank 1 = riskiest), write it to ``out`` atomically, read the head back.

    A global sort spreads the rows over range partitions in order; each row's rank is the
    rows in the partitions before its own plus its position inside it, so no step needs the
    whole table in one partition (a window without a partition would).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    ordered = scored.orderBy(
        F.col("score").desc(), F.col("raw_score").desc(), F.col(KEY).asc_nulls_last()
    )
    # monotonically_increasing_id is (partition << 33) + position in the partition. Kept
    # (persisted) so the counts below and the written rows come from one evaluation of the
    # sort and of the model.
    positioned = (
        ordered.withColumn("_part", F.spark_partition_id())
        .withColumn(
            "_pos",
            F.monotonically_increasing_id() - F.shiftleft(F.col("_part").cast("bigint"), 33),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        sizes = dict(positioned.groupBy("_part").count().collect())
        offsets, total = {}, 0
        for part in sorted(sizes):
            offsets[part], total = total, total + sizes[part]
        offset = F.create_map(*(F.lit(x) for pair in offsets.items() for x in pair))
        ranked = positioned.withColumn(
            "rank", (offset[F.col("_part")] + F.col("_pos") + 1).cast("bigint")
        ).select(*OUTPUT_COLUMNS)
        _write_parquet_dir(ranked, out)
    finally:
        positioned.unpersist()
    head = pd.DataFrame(columns=OUTPUT_COLUMNS)
    if top > 0:
        written = spark.read.parquet(str(out))
        head = written.where(F.col("rank") <= top).orderBy("rank").toPandas()
    return SparkScored(out, total, head)


def _write_parquet_dir(frame: DataFrame, out: Path) -> None:
    """Write ``frame`` as a Parquet directory at ``out``: to a temporary name, then renamed.

    An existing ``out`` is replaced only once the new directory is complete; on failure it is
    left as it was and the temporary directory removed.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        frame.write.mode("overwrite").parquet(str(temporary))
        if out.exists():
            # A directory cannot be replaced by a rename: move the old one aside first.
            old = out.with_name(f"{temporary.name}.old")
            os.replace(out, old)
        try:
            os.replace(temporary, out)
        except OSError:
            if old is not None:
                os.replace(old, out)
                old = None
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        if old is not None and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif old is not None:
            old.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    """The line of a Spark error that says what failed.

    A JVM error starts with it and goes on with a stack trace; an error in a Python worker
    starts with "An exception was thrown from the Python worker" and ends with it.
    """
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[-1] if "Python worker" in lines[0] else lines[0]
    return line.strip()[:500]
