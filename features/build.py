"""Build feature tables from a store-histories directory: features for (store, as-of) keys.

Public API (training and serving rely on these names):

* ``features_for_keys(histories, keys)``: one row per given (store, as-of) key, the one
  keys-in function that serves training and serving alike;
* ``build_feature_table(histories, as_of=None)``: one row per store open before the as-of
  time (default: the end of the histories);
* ``build_training_table(histories)``: one row per label, as of its ``labeled_at``;
* ``feature_spec()``: the full FeatureSpec (store features, then link-graph features).

Every builder validates the directory first, computes the store features of the requested
(store, as-of) rows plus the linked stores' rows the link-graph neighbour aggregates need,
appends the link-graph features and drops the helper rows again. DuckDB runs in-process
over the Parquet/CSV files, with a memory limit and a spill directory so big marketplaces
spill to disk instead of failing (``features.settings``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features import FeaturesError
from features.contract.histories import open_histories
from features.contract.tables import EVENT_TIME_COLUMNS
from features.io import check_table_path, write_table
from features.links import (
    add_link_features,
    link_graph_part,
    login_links,
    neighbour_snapshots,
)
from features.scoring.encoding import PANDAS_DTYPES
from features.settings import duckdb_connection
from features.spec import AS_OF, KEY, FeatureSpec, FeatureSpecError
from features.store.engine import compute_store_features, is_sorted_unique
from features.store.pipeline import STAGES, base_feature_spec

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

Progress = Callable[[str, int, int], None]
"""Progress callback: (description of the step starting, steps done, total steps)."""


class FeatureBuildError(FeaturesError):
    """The feature table cannot be built from otherwise valid histories."""


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


def features_for_keys(
    histories: str | Path,
    keys: pd.DataFrame,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    validate: bool = True,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, FeatureSpec]:
    """Features for these (store, as-of) keys: each row uses only events before its as-of.

    Args:
        histories: The store-histories directory.
        keys: ``store_id`` and ``as_of`` (naive UTC, or tz-aware) per row; at most one row
            per key, each store open before its as-of time.
        con: DuckDB connection to use; a new configured one if None.
        validate: Check the directory against the data contract first.
        progress: Optional callback told about each step.

    Returns:
        The table (``store_id``, ``as_of``, then ``spec.names``), one row per key in the
        keys' order, and its FeatureSpec.

    Raises:
        FeatureBuildError: Keys without those columns, with a missing or unreadable value,
            repeated, of stores the histories do not have, or at or before a store's opening.
    """
    con = _open(histories, con, validate, progress)
    rows = _checked_keys(con, keys)
    return _build(con, rows, progress)


def _checked_keys(con: duckdb.DuckDBPyConnection, keys: pd.DataFrame) -> pd.DataFrame:
    """``keys`` as text ids and naive UTC times, after checking every rule of the keys."""
    missing = [c for c in (KEY, AS_OF) if c not in keys.columns]
    if missing:
        raise FeatureBuildError(f"keys: missing column(s) {', '.join(missing)}")
    try:
        times = pd.to_datetime(keys[AS_OF], utc=True).dt.tz_localize(None).astype("datetime64[us]")
    except (ValueError, TypeError) as exc:
        raise FeatureBuildError(f"keys.as_of: cannot be read as timestamps ({exc})") from exc
    rows = pd.DataFrame({KEY: keys[KEY].astype("str"), AS_OF: times.to_numpy()})
    empty = keys[KEY].isna().to_numpy() | rows[AS_OF].isna().to_numpy()
    if empty.any():
        raise FeatureBuildError(
            f"keys: {int(empty.sum())} row(s) with an empty store_id or as_of, e.g. at rows "
            f"{list(keys.index[empty][:5])}"
        )
    repeated = rows.duplicated(keep=False).to_numpy()
    if repeated.any():
        raise FeatureBuildError(
            f"keys: {int(repeated.sum())} rows repeat a (store_id, as_of) key, e.g. store_id "
            f"{rows.loc[repeated, KEY].drop_duplicates().head(5).tolist()}"
        )
    con.register("spotcheck_requested_keys", rows)
    try:
        unknown, unknown_ids, early, early_ids = con.execute(
            "SELECT count(*) FILTER (WHERE s.store_id IS NULL), "
            "list(k.store_id ORDER BY k.store_id) FILTER (WHERE s.store_id IS NULL)[1:5], "
            "count(*) FILTER (WHERE k.as_of <= s.opened_at), "
            "list(k.store_id ORDER BY k.store_id) FILTER (WHERE k.as_of <= s.opened_at)[1:5] "
            "FROM spotcheck_requested_keys k LEFT JOIN stores s USING (store_id)"
        ).fetchall()[0]
    finally:
        con.unregister("spotcheck_requested_keys")
    if unknown:
        raise FeatureBuildError(
            f"keys: {unknown} row(s) for stores the histories do not have, e.g. {unknown_ids}"
        )
    if early:
        raise FeatureBuildError(
            f"keys: {early} row(s) as of a time at or before their store's opened_at (no "
            f"history yet), e.g. store_id {early_ids}"
        )
    return rows


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
        from features.contract.validation import check_histories

        report = progress or (lambda _step, _done, _total: None)
        check_histories(histories, progress=lambda step: report(f"validating: {step}", 0, 0))
    return open_histories(histories, con if con is not None else duckdb_connection())


def _build(
    con: duckdb.DuckDBPyConnection, keys: pd.DataFrame, progress: Progress | None
) -> tuple[pd.DataFrame, FeatureSpec]:
    """Store features for ``keys`` and their link neighbours, then link features.

    ``keys`` are checked: every store exists and is open before its as-of time, so the
    store features have exactly one row per distinct key.
    """
    report = progress or (lambda _step, _done, _total: None)
    total = len(STAGES) + 8
    report("deriving store links from logins", 0, total)
    links = login_links(con)
    extra = neighbour_snapshots(keys, links) if len(keys) else keys.iloc[:0]
    all_keys = pd.concat([keys, extra[[KEY, AS_OF]]], ignore_index=True)
    labels = con.execute("SELECT store_id, labeled_at, is_counterfeit FROM labels").df()
    # The link graph needs only the rows' keys: it is built on a second thread while DuckDB
    # computes the store features (DuckDB releases the GIL; the graph work is one thread).
    with ThreadPoolExecutor(max_workers=1) as pool:
        graph = pool.submit(link_graph_part, _expected_rows(all_keys), links, labels)
        base = compute_store_features(con, all_keys, progress=_offset(report, 1, total))
        graph_part = graph.result()
    report("adding link-graph features", total - 1, total)
    spec_base = base_feature_spec()
    with_links, link_spec = add_link_features(
        base,
        links,
        labels,
        neighbour_columns=list(NEIGHBOUR_COLUMNS),
        base_spec=spec_base,
        graph_part=graph_part,
    )
    spec = spec_base + link_spec
    table = coerce_to_spec(_requested_rows(with_links, keys), spec)
    spec.check_table(table)
    report("done", total, total)
    return table, spec


def _expected_rows(keys: pd.DataFrame) -> pd.DataFrame:
    """The (store_id, as_of) rows ``compute_store_features`` returns for checked keys.

    Distinct keys sorted like its output (which drops keys of unknown stores: the keys are
    checked first, so there are none).
    """
    rows = keys[[KEY, AS_OF]]
    if not is_sorted_unique(rows):
        rows = rows.drop_duplicates().sort_values([KEY, AS_OF], kind="stable")
    return rows.reset_index(drop=True)


def _requested_rows(table: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` for ``keys``, in the keys' order (link helper rows dropped)."""
    key_columns = [KEY, AS_OF]
    if len(table) == len(keys) and _same_keys(table, keys):
        return table  # no link helper rows (the usual case for one as-of time)
    wanted = pd.MultiIndex.from_frame(keys[key_columns])
    kept = table[pd.MultiIndex.from_frame(table[key_columns]).isin(wanted)]
    if _same_keys(kept, keys):
        return kept  # both sorted by (store_id, as_of): no reordering copy
    return keys[key_columns].merge(table, on=key_columns, how="left", validate="one_to_one")


def _same_keys(table: pd.DataFrame, keys: pd.DataFrame) -> bool:
    """Whether ``table`` has exactly the (store_id, as_of) rows of ``keys``, in order."""
    return all(np.array_equal(table[c].to_numpy(), keys[c].to_numpy()) for c in (KEY, AS_OF))


def _offset(report: Progress, offset: int, total: int) -> Progress:
    """A progress callback for a sub-pipeline whose steps start at ``offset``."""
    return lambda step, done, _sub_total: report(step, offset + done, total)


def spec_path(out: str | Path) -> Path:
    """Where the FeatureSpec of a feature table file goes: ``FILE.spec.json`` next to it."""
    out = Path(out)
    return out.with_name(out.name + ".spec.json")


def write_feature_table(table: pd.DataFrame, spec: FeatureSpec, out: str | Path) -> Path:
    """Write a feature table (Parquet, or CSV by extension) and its spec, atomically.

    Args:
        table: The feature table (``store_id``, ``as_of``, ``spec.names``).
        spec: Its FeatureSpec, written to ``spec_path(out)``.
        out: Output path ending in ``.parquet`` or ``.csv``.

    Returns:
        The path of the spec file.

    Raises:
        OutputError: If the extension is neither ``.parquet`` nor ``.csv``.
        FeatureSpecError: If the table's columns are not the spec's.
    """
    out = check_table_path(out)
    spec.check_table(table)
    spec_out = spec_path(out)
    write_table(table, out, sidecars={spec_out: spec.to_json() + "\n"})
    return spec_out


def coerce_to_spec(table: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Cast each feature column to its spec dtype's pandas type.

    Floats become float64 (NULL as NaN), ints int64, bools bool and categories strings.
    Columns that already have their type are not copied (wide tables are big).

    Raises:
        FeatureSpecError: If an int or bool column has missing values (a definition bug:
            those must be defined for every row).
    """
    casts: dict[str, str] = {KEY: "str", AS_OF: "datetime64[us]"}
    for feat in spec:
        column = table[feat.name]
        if feat.dtype in ("int", "bool") and column.isna().any():
            raise FeatureSpecError(
                f"feature {feat.name!r} ({feat.dtype}) has {int(column.isna().sum())} missing "
                "values"
            )
        if feat.dtype == "float" and not pd.api.types.is_numeric_dtype(column.dtype):
            table = table.assign(**{feat.name: pd.to_numeric(column, errors="raise")})
        casts[feat.name] = PANDAS_DTYPES[feat.dtype]
    columns = [KEY, AS_OF, *spec.names]
    changed = {c: t for c, t in casts.items() if table[c].dtype != pd.api.types.pandas_dtype(t)}
    if AS_OF in changed:
        table = table.assign(**{AS_OF: pd.to_datetime(table[AS_OF])})
    return table[columns].astype(changed).reset_index(drop=True)
