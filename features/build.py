"""Build feature tables from a store-histories directory with DuckDB.

Public API (training and serving rely on these names):

* ``build_feature_table(histories, as_of=None)``: one row per store open before the as-of
  time (default: the end of the histories);
* ``build_training_table(histories)``: one row per label, as of its ``labeled_at``;
* ``feature_spec()``: the full FeatureSpec (store features, then link-graph features).

Both builders validate the directory first, compute the store features of the requested
(store, as-of) rows plus the linked stores' rows the link-graph neighbour aggregates need,
append the link-graph features and drop the helper rows again. DuckDB runs in-process over
the Parquet/CSV files, with a memory limit and a spill directory so big marketplaces spill
to disk instead of failing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import EVENT_TIME_COLUMNS
from features.feature_sql import DUCKDB, FeatureDef
from features.histories import connect, open_histories
from features.spec import FeatureSpec, FeatureSpecError
from features.store_features import STAGES as STORE_STAGES
from features.store_features import (
    base_feature_spec,
    feature_defs,
    final_sql,
    snapshots_sql,
    stage_sql,
    stages_for,
)
from features.store_features_catalogue import (
    brand_mentions_sql,
    brand_pattern,
    brands_sql,
    listing_facts_sql,
)

# Store features whose mean and max over linked stores become link-graph features: the
# strongest direct evidence of counterfeiting that a ring shares.
NEIGHBOUR_COLUMNS: tuple[str, ...] = (
    "price_to_reference_median",
    "share_listings_below_half_reference",
    "replica_any_share",
    "brand_stuffing_share",
    "counterfeit_dispute_rate",
    "fake_mention_review_share",
    "ship_from_mismatch_share",
    "store_age_days",
)
LINK_PREFIX = "link_"

# Settings, read when a connection is made (environment variables override the defaults).
MEMORY_LIMIT_ENV = "SPOTCHECK_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "12GB"
TEMP_DIR_ENV = "SPOTCHECK_DUCKDB_TEMP_DIR"
THREADS_ENV = "SPOTCHECK_DUCKDB_THREADS"

Progress = Callable[[str, int, int], None]
"""Progress callback: (description of the step starting, steps done, total steps)."""


class FeatureBuildError(ValueError):
    """The feature table cannot be built from otherwise valid histories."""


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    """A new UTC DuckDB connection with the memory limit, spill directory and threads set.

    Settings: ``SPOTCHECK_DUCKDB_MEMORY_LIMIT`` (default 12GB), ``SPOTCHECK_DUCKDB_TEMP_DIR``
    (default ``<system temp>/spotcheck-duckdb``), ``SPOTCHECK_DUCKDB_THREADS`` (default: all
    cores).
    """
    con = connect(duckdb.connect())
    memory = os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT)
    temp_dir = os.environ.get(TEMP_DIR_ENV) or str(Path(tempfile.gettempdir(), "spotcheck-duckdb"))
    Path(temp_dir).mkdir(parents=True, exist_ok=True)
    con.execute(f"SET memory_limit = '{memory}'")
    con.execute("SET temp_directory = ?", [temp_dir])
    # Results are re-sorted explicitly; not keeping insertion order lets DuckDB stream.
    con.execute("SET preserve_insertion_order = false")
    threads = os.environ.get(THREADS_ENV)
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def to_utc_timestamp(value: str | datetime | pd.Timestamp) -> pd.Timestamp:
    """Parse an as-of time into a naive UTC timestamp with microsecond precision.

    Args:
        value: ISO 8601 string, datetime or Timestamp; naive values are taken as UTC.

    Raises:
        FeatureBuildError: If the value cannot be read as a time.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise FeatureBuildError(f"as_of: not a time: {value!r}") from exc
    if ts is pd.NaT:
        raise FeatureBuildError(f"as_of: not a time: {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("us")


def default_as_of(con: duckdb.DuckDBPyConnection) -> pd.Timestamp:
    """The end of the histories: 1 microsecond after the latest event, delivery or opening.

    Every event and every store then falls strictly before it, so the default table has a
    row for every store and uses all of its history.
    """
    columns = [*EVENT_TIME_COLUMNS.items(), ("orders", "delivered_at"), ("stores", "opened_at")]
    parts = [_latest_sql(con, table, column) for table, column in columns]
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open and refuses other work.
    latest = con.execute(f"SELECT max(t) FROM ({' UNION ALL '.join(parts)})").fetchall()[0][0]
    if latest is None:
        raise FeatureBuildError("the histories have no stores and no events")
    return to_utc_timestamp(latest) + pd.Timedelta(microseconds=1)


# Raw timestamp types whose typed conversion (``histories.typed_select_sql``) is monotone.
_RAW_TIMESTAMP_TYPES = frozenset(
    {"TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"}
)


def _latest_sql(con: duckdb.DuckDBPyConnection, table: str, column: str) -> str:
    """SELECT of ``max(column)`` of a typed view, from the raw column where that is exact.

    The typed view converts every value, so its max is a full scan (a second at 100M
    events); a monotone conversion commutes with max, and the max of a raw Parquet
    timestamp column comes from the file's statistics. CSV text falls back to the view.
    """
    raw_type = str(con.sql(f'SELECT "{column}" FROM raw_{table}').types[0])
    if raw_type in _RAW_TIMESTAMP_TYPES:
        return f'SELECT make_timestamp(epoch_us(max("{column}"))) AS t FROM raw_{table}'
    return f"SELECT max({column}) AS t FROM {table}"


def feature_spec() -> FeatureSpec:
    """The full FeatureSpec: the store features, then the link-graph features."""
    from features.links import add_link_features

    base = base_feature_spec()
    # The link spec depends only on the input's columns, so an empty table yields it.
    empty = pd.DataFrame(
        {
            "store_id": pd.Series([], dtype="str"),
            "as_of": pd.Series([], dtype="datetime64[us]"),
            **{c: pd.Series([], dtype="float64") for c in NEIGHBOUR_COLUMNS},
        }
    )
    links = pd.DataFrame(
        {
            "store_id": pd.Series([], dtype="str"),
            "linked_store_id": pd.Series([], dtype="str"),
            "kind": pd.Series([], dtype="str"),
            "linked_at": pd.Series([], dtype="datetime64[us]"),
            "unlinked_at": pd.Series([], dtype="datetime64[us]"),
        }
    )
    labels = pd.DataFrame(
        {
            "store_id": pd.Series([], dtype="str"),
            "labeled_at": pd.Series([], dtype="datetime64[us]"),
            "is_counterfeit": pd.Series([], dtype="int64"),
        }
    )
    _, link_spec = add_link_features(
        empty,
        links,
        labels,
        neighbour_columns=list(NEIGHBOUR_COLUMNS),
        prefix=LINK_PREFIX,
        base_spec=base,
    )
    return base + link_spec


def build_feature_table(
    histories: str | Path,
    as_of: str | datetime | pd.Timestamp | None = None,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    validate: bool = True,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, FeatureSpec]:
    """One feature row per store open before the as-of time, using events before it.

    Args:
        histories: The store-histories directory.
        as_of: The as-of time (naive = UTC); default: the end of the histories (see
            ``default_as_of``).
        con: DuckDB connection to use; a new configured one (``duckdb_connection``) if None.
        validate: Check the directory against the data contract first (raises
            ``ContractViolationError``); switch off only for a directory already checked.
        progress: Optional callback told about each step.

    Returns:
        The table (columns ``store_id``, ``as_of``, then exactly ``spec.names``; rows sorted
        by ``store_id``) and its FeatureSpec.
    """
    con = _open(histories, con, validate, progress)
    when = default_as_of(con) if as_of is None else to_utc_timestamp(as_of)
    return _build(con, open_store_keys(con, when), progress)


def open_store_keys(con: duckdb.DuckDBPyConnection, as_of: pd.Timestamp) -> pd.DataFrame:
    """Keys (``store_id``, ``as_of``) of the stores open before ``as_of``, by store_id.

    Args:
        con: Connection with the histories views open.
        as_of: Naive UTC as-of time (see ``to_utc_timestamp``).
    """
    query = (
        "SELECT store_id, CAST($as_of AS TIMESTAMP) AS as_of FROM stores "
        "WHERE opened_at < CAST($as_of AS TIMESTAMP) ORDER BY store_id"
    )
    # Through Arrow: DuckDB's own pandas conversion of a million ids takes twice as long.
    relation = con.sql(query, params={"as_of": as_of.to_pydatetime()})
    return relation.to_arrow_table().to_pandas()


def build_training_table(
    histories: str | Path,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    validate: bool = True,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, FeatureSpec]:
    """One feature row per label, as of the label's ``labeled_at``.

    Each row uses only events strictly before its label time, and link-graph features count
    only other stores' labels known before it; the row's own label never enters a feature.

    Args:
        histories: The store-histories directory.
        con: DuckDB connection to use; a new configured one if None.
        validate: Check the directory against the data contract first.
        progress: Optional callback told about each step.

    Returns:
        The table (``store_id``, ``as_of`` = ``labeled_at``, then ``spec.names``; one row per
        label, sorted by ``store_id`` then ``labeled_at`` like the labels' key) and the spec.

    Raises:
        FeatureBuildError: If a label is not after its store's opening (no history to learn
            from, and the row would describe a store that did not exist yet).
    """
    con = _open(histories, con, validate, progress)
    early = con.execute(
        "SELECT count(*), list(l.store_id ORDER BY l.store_id)[1:5] FROM labels l "
        "JOIN stores s USING (store_id) WHERE l.labeled_at <= s.opened_at"
    ).fetchone()
    if early[0]:
        raise FeatureBuildError(
            f"labels: {early[0]} label(s) at or before their store's opened_at, e.g. "
            f"store_id {early[1]}"
        )
    keys = con.execute(
        "SELECT store_id, labeled_at AS as_of FROM labels ORDER BY store_id, labeled_at"
    ).df()
    return _build(con, keys, progress)


def _open(
    histories: str | Path,
    con: duckdb.DuckDBPyConnection | None,
    validate: bool,
    progress: Progress | None,
) -> duckdb.DuckDBPyConnection:
    """Validate (optionally) and open the histories on a connection."""
    if validate:
        from features.validation import check_histories

        report = progress or (lambda _step, _done, _total: None)
        check_histories(histories, progress=lambda step: report(f"validating: {step}", 0, 0))
    return open_histories(histories, con if con is not None else duckdb_connection())


def _build(
    con: duckdb.DuckDBPyConnection, keys: pd.DataFrame, progress: Progress | None
) -> tuple[pd.DataFrame, FeatureSpec]:
    """Store features for ``keys`` and their link neighbours, then link features."""
    from features.links import (
        add_link_features,
        link_graph_part,
        login_links,
        neighbour_snapshots,
    )

    report = progress or (lambda _step, _done, _total: None)
    total = len(STORE_STAGES) + 8
    report("deriving store links from logins", 0, total)
    links = login_links(con)
    extra = neighbour_snapshots(keys, links) if len(keys) else keys.iloc[:0]
    all_keys = pd.concat([keys, extra[["store_id", "as_of"]]], ignore_index=True)
    labels = con.execute("SELECT store_id, labeled_at, is_counterfeit FROM labels").df()
    # The link graph needs only the rows' keys: it is built on a second thread while DuckDB
    # computes the store features (DuckDB releases the GIL; the graph work is one thread).
    with ThreadPoolExecutor(max_workers=1) as pool:
        graph = pool.submit(
            link_graph_part, _expected_rows(all_keys), links, labels, prefix=LINK_PREFIX
        )
        base = compute_store_features(con, all_keys, progress=_offset(report, 1, total))
        graph_part = graph.result()
    report("adding link-graph features", total - 1, total)
    spec_base = base_feature_spec()
    with_links, link_spec = add_link_features(
        base,
        links,
        labels,
        neighbour_columns=list(NEIGHBOUR_COLUMNS),
        prefix=LINK_PREFIX,
        base_spec=spec_base,
        graph_part=graph_part,
    )
    spec = spec_base + link_spec
    table = coerce_to_spec(_requested_rows(with_links, keys), spec)
    spec.check_table(table)
    report("done", total, total)
    return table, spec


def _expected_rows(keys: pd.DataFrame) -> pd.DataFrame:
    """The (store_id, as_of) rows ``compute_store_features`` returns for known stores.

    Distinct keys sorted like its output; a key of an unknown store would make the rows
    differ, and ``add_link_features`` then builds the graph itself.
    """
    rows = keys[["store_id", "as_of"]]
    if not _is_sorted_unique(rows):
        rows = rows.drop_duplicates().sort_values(["store_id", "as_of"], kind="stable")
    return rows.reset_index(drop=True)


def _plain_keys(keys: pd.DataFrame) -> bool:
    """Whether keys are text ids and naive timestamps: then pandas orders them as DuckDB does."""
    return isinstance(keys["store_id"].dtype, pd.StringDtype) and keys["as_of"].dtype.kind == "M"


def _row_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def _is_sorted_unique(rows: pd.DataFrame) -> bool:
    """Whether (store_id, as_of) rows are strictly increasing (the usual case: no work)."""
    if len(rows) < 2:
        return True
    ids = pa.array(rows["store_id"])
    times = rows["as_of"].to_numpy()
    previous, current = ids[:-1], ids[1:]
    try:
        ahead = pc.less(previous, current).to_numpy(zero_copy_only=False)
        same = pc.equal(previous, current).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return bool(np.all(ahead | (same & (times[:-1] < times[1:]))))


def _requested_rows(table: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` for ``keys``, in the keys' order (link helper rows dropped)."""
    key_columns = ["store_id", "as_of"]
    if len(table) == len(keys) and _same_keys(table, keys):
        return table  # no link helper rows (the usual case for one as-of time)
    wanted = pd.MultiIndex.from_frame(keys[key_columns])
    kept = table[pd.MultiIndex.from_frame(table[key_columns]).isin(wanted)]
    if _same_keys(kept, keys):
        return kept  # both sorted by (store_id, as_of): no reordering copy
    return keys[key_columns].merge(table, on=key_columns, how="left", validate="one_to_one")


def _same_keys(table: pd.DataFrame, keys: pd.DataFrame) -> bool:
    """Whether ``table`` has exactly the (store_id, as_of) rows of ``keys``, in order."""
    return all(
        np.array_equal(table[c].to_numpy(), keys[c].to_numpy()) for c in ("store_id", "as_of")
    )


def _offset(report: Progress, offset: int, total: int) -> Progress:
    """A progress callback for a sub-pipeline whose steps start at ``offset``."""
    return lambda step, done, _sub_total: report(step, offset + done, total)


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
    ordered = _plain_keys(keys) and _is_sorted_unique(keys)
    key_input = keys[["store_id", "as_of"]]
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
            "store_id": pa.array(keys["store_id"]),
            "as_of": pa.array(keys["as_of"].to_numpy().astype("datetime64[us]")),
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


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def spec_path(out: str | Path) -> Path:
    """Where the FeatureSpec of a feature table file goes: ``FILE.spec.json`` next to it."""
    out = Path(out)
    return out.with_name(out.name + ".spec.json")


def write_feature_table(table: pd.DataFrame, spec: FeatureSpec, out: str | Path) -> Path:
    """Write a feature table (Parquet, or CSV by extension) and its spec, atomically.

    Both files are written to temporary names in the target directory and renamed into
    place only once both are complete, so a failure leaves no partial output.

    Args:
        table: The feature table (``store_id``, ``as_of``, ``spec.names``).
        spec: Its FeatureSpec, written to ``spec_path(out)``.
        out: Output path ending in ``.parquet`` or ``.csv``.

    Returns:
        The path of the spec file.

    Raises:
        FeatureBuildError: If the extension is neither ``.parquet`` nor ``.csv``.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise FeatureBuildError(f"output {str(out)!r}: use a .parquet or .csv file name")
    spec.check_table(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec_out = spec_path(out)
    tmp_table = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp_spec = spec_out.with_name(f".{spec_out.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".parquet":
            table.to_parquet(tmp_table, index=False)
        else:
            table.to_csv(tmp_table, index=False)
        tmp_spec.write_text(spec.to_json() + "\n")
        os.replace(tmp_table, out)
        os.replace(tmp_spec, spec_out)
    finally:
        for tmp in (tmp_table, tmp_spec):
            tmp.unlink(missing_ok=True)
    return spec_out


_PANDAS_DTYPES = {"float": "float64", "int": "int64", "bool": "bool", "category": "str"}


def coerce_to_spec(table: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Cast each feature column to its spec dtype's pandas type.

    Floats become float64 (NULL as NaN), ints int64, bools bool and categories strings.
    Columns that already have their type are not copied (wide tables are big).

    Raises:
        FeatureSpecError: If an int or bool column has missing values (a definition bug:
            those must be defined for every row).
    """
    casts: dict[str, str] = {"store_id": "str", "as_of": "datetime64[us]"}
    for feat in spec:
        column = table[feat.name]
        if feat.dtype in ("int", "bool") and column.isna().any():
            raise FeatureSpecError(
                f"feature {feat.name!r} ({feat.dtype}) has {int(column.isna().sum())} missing "
                "values"
            )
        if feat.dtype == "float" and not pd.api.types.is_numeric_dtype(column.dtype):
            table = table.assign(**{feat.name: pd.to_numeric(column, errors="raise")})
        casts[feat.name] = _PANDAS_DTYPES[feat.dtype]
    columns = ["store_id", "as_of", *spec.names]
    changed = {c: t for c, t in casts.items() if table[c].dtype != pd.api.types.pandas_dtype(t)}
    if "as_of" in changed:
        table = table.assign(as_of=pd.to_datetime(table["as_of"]))
    return table[columns].astype(changed).reset_index(drop=True)


__all__ = [
    "FeatureBuildError",
    "NEIGHBOUR_COLUMNS",
    "build_feature_table",
    "build_training_table",
    "compute_store_features",
    "default_as_of",
    "duckdb_connection",
    "feature_spec",
    "spec_path",
    "write_feature_table",
]
