"""Open a store-histories directory as DuckDB views, without loading it into memory.

Each contract table is a file in the directory: ``NAME.parquet``, ``NAME.csv`` or a folder
``NAME/`` of Parquet parts. Two views are made per table:

* ``raw_NAME``: the file as read (CSV columns all text), for validation to inspect;
* ``NAME``: only the contract columns, cast to their contract types with timestamps in UTC.

Every other module queries the typed views, so the same SQL runs over Parquet or CSV.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from features import FeaturesError
from features.contract.tables import CONTRACT, DUCKDB_TYPES, Table


class HistoriesError(FeaturesError):
    """A histories directory cannot be opened (missing directory, table or column)."""


def find_table_source(directory: Path, table: str) -> Path | None:
    """Return the file or folder that holds ``table`` in ``directory``, or None if absent.

    Args:
        directory: The histories directory.
        table: Contract table name.

    Returns:
        ``NAME.parquet``, ``NAME.csv`` or a ``NAME/`` folder of Parquet parts.
    """
    for candidate in (directory / f"{table}.parquet", directory / f"{table}.csv"):
        if candidate.is_file():
            return candidate
    folder = directory / table
    if folder.is_dir() and any(folder.glob("*.parquet")):
        return folder
    return None


def missing_table(directory: Path, table: str) -> HistoriesError:
    """The error for a contract table absent from a histories directory."""
    return HistoriesError(
        f"table {table!r}: missing; expected {table}.parquet, {table}.csv or a "
        f"folder {table}/ of Parquet files in {str(directory)!r}"
    )


def missing_columns(table: str, source: Path, missing: list[str]) -> HistoriesError:
    """The error for contract columns absent from a table's file."""
    return HistoriesError(
        f"table {table!r} ({source.name}): missing column(s) {', '.join(missing)}"
    )


def scan_sql(source: Path) -> str:
    """SQL table function that scans ``source`` (Parquet file, Parquet folder or CSV)."""
    path = str(source).replace("'", "''")
    if source.is_dir():
        return f"read_parquet('{path}/*.parquet')"
    if source.suffix == ".csv":
        # all_varchar: types are checked by validation with TRY_CAST, not guessed.
        return f"read_csv('{path}', header=true, all_varchar=true)"
    return f"read_parquet('{path}')"


def typed_select_sql(
    table: Table, source_view: str, raw_types: dict[str, str] | None = None
) -> str:
    """SELECT that casts a raw view's contract columns to their contract types.

    ``raw_types`` (column -> DuckDB type as read) lets timestamps skip the slow path: casting
    through TIMESTAMPTZ converts every value via ICU time zones and costs ~20x a plain read,
    so instants are converted with ``epoch_us`` arithmetic instead.
    """
    raw_types = raw_types or {}
    exprs = []
    for col in table.columns:
        target = DUCKDB_TYPES[col.kind]
        name = f'"{col.name}"'
        raw_type = raw_types.get(col.name)
        if col.kind == "timestamp" and raw_type == target:
            exprs.append(name)
        elif col.kind == "timestamp" and raw_type in (
            "TIMESTAMP_NS",
            "TIMESTAMP_MS",
            "TIMESTAMP_S",
        ):
            exprs.append(f"CAST({name} AS TIMESTAMP) AS {name}")  # naive: UTC by contract
        elif col.kind == "timestamp":
            # Parquet may carry TIMESTAMP WITH TIME ZONE and CSV offsets; both are instants,
            # whose UTC wall time is their epoch microseconds.
            instant = (
                name if raw_type == "TIMESTAMP WITH TIME ZONE" else f"CAST({name} AS TIMESTAMPTZ)"
            )
            exprs.append(f"make_timestamp(epoch_us({instant})) AS {name}")
        else:
            exprs.append(f"CAST({name} AS {target}) AS {name}")
    return f"SELECT {', '.join(exprs)} FROM {source_view}"


def connect(con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection set to UTC (a new in-memory one if ``con`` is None)."""
    con = con or duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def open_histories(
    directory: str | Path,
    con: duckdb.DuckDBPyConnection | None = None,
    tables: tuple[str, ...] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Register the raw and typed views of a histories directory on a DuckDB connection.

    Args:
        directory: The histories directory.
        con: Connection to register the views on; a new in-memory one if None.
        tables: Contract tables to open; all of them if None.

    Returns:
        The connection, with views ``raw_NAME`` and ``NAME`` for every table.

    Raises:
        HistoriesError: If the directory, a table or a contract column is missing.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise HistoriesError(f"histories directory {str(directory)!r} does not exist")
    con = connect(con)
    for name in tables or tuple(CONTRACT):
        table = CONTRACT[name]
        source = find_table_source(directory, name)
        if source is None:
            raise missing_table(directory, name)
        con.execute(f"CREATE OR REPLACE VIEW raw_{name} AS SELECT * FROM {scan_sql(source)}")
        present = {row[0]: row[1] for row in con.execute(f"DESCRIBE raw_{name}").fetchall()}
        missing = [c for c in table.column_names if c not in present]
        if missing:
            raise missing_columns(name, source, missing)
        con.execute(
            f"CREATE OR REPLACE VIEW {name} AS {typed_select_sql(table, f'raw_{name}', present)}"
        )
    return con
