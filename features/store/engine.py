"""Run the store-feature pipeline on DuckDB for given (store, as-of) keys.

DuckDB runs in-process over the Parquet/CSV views of a histories directory: the snapshot
keys are registered, the listing facts and every stage the requested features need are
materialized as temporary tables, and the final SELECT is read through Arrow, sorted in
parallel and handed to pandas with one copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.settings import available_cores
from features.spec import AS_OF, KEY
from features.store.catalogue import (
    brand_mentions_sql,
    brand_pattern,
    brands_sql,
    listing_facts_sql,
)
from features.store.dialect import DUCKDB, FeatureDef
from features.store.pipeline import feature_defs, final_sql, stage_sql, stages_for
from features.store.snapshots import snapshots_sql

Progress = Callable[[str, int, int], None]
"""Progress callback: (description of the step starting, steps done, total steps)."""


def compute_store_features(
    con: duckdb.DuckDBPyConnection,
    keys: pd.DataFrame,
    *,
    names: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The store features (all groups but the link graph) for (store, as-of) rows.

    Args:
        con: Connection with the histories views open.
        keys: ``store_id`` and ``as_of`` (naive UTC) per row; unknown stores are dropped.
        names: Base features to compute (all if None); only the stages they need run.
        progress: Optional callback told about each step.

    Returns:
        ``store_id``, ``as_of`` and the features in spec order, one row per distinct key,
        sorted by (store_id, as_of).
    """
    report = progress or (lambda _step, _done, _total: None)
    defs = feature_defs(names)
    stages = stages_for(defs)
    uses_listings = any(st.source == "listings" for st in stages)
    uses_mentions = any(st.name == "brand_mentions" for st in stages)
    total = len(stages) + 5
    created: list[tuple[str, str]] = []

    def materialize(name: str, sql: str, done: int, what: str, kind: str = "TABLE") -> None:
        report(what, done, total)
        con.execute(f"CREATE OR REPLACE TEMP {kind} {name} AS {sql}")
        created.append((kind, name))

    # Keys already sorted and distinct (the usual case) are numbered here: no DISTINCT and
    # no sort in DuckDB, and the result's keys are these very columns.
    ordered = _plain_keys(keys) and is_sorted_unique(keys)
    key_input = keys[[KEY, AS_OF]]
    if ordered:
        key_input = key_input.assign(snap_id=np.arange(1, len(keys) + 1, dtype=np.int64))
    try:
        con.register("snapshot_keys_input", key_input)
        try:
            numbered = ", snap_id" if ordered else ""
            materialize(
                "snapshot_keys",
                f"SELECT {'' if ordered else 'DISTINCT '}CAST(store_id AS VARCHAR) AS store_id, "
                f"CAST(as_of AS TIMESTAMP) AS as_of{numbered} FROM snapshot_keys_input",
                0,
                "preparing snapshots",
            )
        finally:
            con.unregister("snapshot_keys_input")
        materialize(
            "snapshots", snapshots_sql("snapshot_keys", numbered=ordered), 1, "preparing snapshots"
        )
        # Every key kept (no unknown store): the keys' own columns go into the result.
        reuse_keys = ordered and _row_count(con, "snapshots") == len(keys)
        if uses_listings:
            brands = None
            if uses_mentions:
                brands = brand_pattern([row[0] for row in con.execute(brands_sql()).fetchall()])
            # A view: each stage computes only the listing facts it reads (the text flags
            # are costly and only one stage needs them).
            facts = listing_facts_sql(DUCKDB, brands)
            materialize("listing_facts", facts, 2, "reading listings", kind="VIEW")
            if uses_mentions:
                mentions = brand_mentions_sql(DUCKDB, brands)
                materialize("brand_mentions", mentions, 3, "finding brand names")
        for i, stage in enumerate(stages):
            sql = stage_sql(stage, defs, DUCKDB)
            materialize(f"stage_{stage.name}", sql, 4 + i, f"{stage.source}: {stage.name}")
        report("joining features", total - 1, total)
        sql = _missing_floats_as_nan(final_sql(DUCKDB, names), defs)
        if reuse_keys:
            sql = f"SELECT * EXCLUDE (store_id, as_of) FROM ({sql})"
        table = con.sql(sql).to_arrow_table()
    finally:
        for kind, name in reversed(created):
            con.execute(f"DROP {kind} IF EXISTS {name}")
    leading = None
    if reuse_keys:
        leading = {
            KEY: pa.array(keys[KEY]),
            AS_OF: pa.array(keys[AS_OF].to_numpy().astype("datetime64[us]")),
        }
    return sorted_frame(table, "snap_id", leading)


def _missing_floats_as_nan(sql: str, defs: Iterable[FeatureDef]) -> str:
    """``sql`` with NULL float features as NaN, which pandas reads as missing all the same.

    Arrow columns without nulls convert to pandas without a copy; with nulls, every float
    column is copied to fill in NaN (a second at a million rows, mostly page faults).
    """
    floats = [d.feature.name for d in defs if d.feature.dtype == "float"]
    if not floats:
        return sql
    nan = ", ".join(f"coalesce({name}, CAST('NaN' AS DOUBLE)) AS {name}" for name in floats)
    return f"SELECT * REPLACE ({nan}) FROM ({sql})"


def sorted_frame(
    table: pa.Table, key: str, leading: dict[str, pa.Array] | None = None
) -> pd.DataFrame:
    """An Arrow query result as a pandas frame sorted by ``key`` (dropped), one copy only.

    Sorting in Arrow and converting with one block per column avoids the copies DuckDB's
    ``.df()`` and pandas' block consolidation make of wide tables (seconds at 1M rows); an
    ORDER BY in the query would sort the wide rows in DuckDB first.

    Args:
        table: The query result.
        key: Column to sort by, then drop.
        leading: Columns already in sorted order to put first.
    """
    order = pc.sort_indices(table[key])
    rest = table.drop_columns([key])
    # Column by column on every core: Table.take runs on one and is several times slower.
    with ThreadPoolExecutor(max_workers=available_cores()) as pool:
        columns = list(pool.map(lambda column: column.take(order), rest.columns))
    names = rest.column_names
    if leading:
        columns, names = [*leading.values(), *columns], [*leading, *names]
    return pa.table(columns, names=names).to_pandas(split_blocks=True, self_destruct=True)


def _plain_keys(keys: pd.DataFrame) -> bool:
    """Whether keys are text ids and naive timestamps: then pandas orders them as DuckDB does."""
    return isinstance(keys[KEY].dtype, pd.StringDtype) and keys[AS_OF].dtype.kind == "M"


def _row_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def is_sorted_unique(rows: pd.DataFrame) -> bool:
    """Whether (store_id, as_of) rows are strictly increasing (the usual case: no work)."""
    if len(rows) < 2:
        return True
    ids = pa.array(rows[KEY])
    times = rows[AS_OF].to_numpy()
    previous, current = ids[:-1], ids[1:]
    try:
        ahead = pc.less(previous, current).to_numpy(zero_copy_only=False)
        same = pc.equal(previous, current).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return bool(np.all(ahead | (same & (times[:-1] < times[1:]))))
