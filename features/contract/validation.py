"""Validate a store-histories directory against the data contract, out of core.

Every check is DuckDB SQL over views of the files, so a 100M-row marketplace is checked without
loading it into memory:

* one scan per table counts every per-row problem at once (types, nulls, allowed values, rules,
  future timestamps, cross-column rules) and reads the summary figures;
* a second, filtered scan of that table runs only if something failed, to fetch examples;
* one grouped query per table key finds duplicates; one join per foreign key finds references
  to unknown rows (and, in the same join, rows that point at another store's listing or order).

Examples come from bounded aggregates (the three smallest keys), so memory does not grow with
the number of bad rows. Nothing is written: spills go to a private temporary directory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from features import FeaturesError
from features.contract.histories import HistoriesError, connect, find_table_source, scan_sql
from features.contract.tables import CONTRACT, EVENT_TIME_COLUMNS, Column, ForeignKey, Table

N_EXAMPLES = 3
"""How many example keys a violation carries."""

# The column that dates each table's rows in the summary.
SUMMARY_TIME_COLUMNS: dict[str, str] = {
    "stores": "opened_at",
    **EVENT_TIME_COLUMNS,
    "labels": "labeled_at",
}

_TYPE_TEXT = {
    "int": "must be an integer",
    "float": "must be a finite number",
    "bool": "must be a boolean (true/false)",
    "timestamp": "must be a parseable timestamp",
}


@dataclass(frozen=True)
class RowRule:
    """A check across several columns of one row, beyond the contract's one-column rules.

    Attributes:
        table: Table the rule applies to.
        column: Column the violation is reported on.
        columns: Every column the rule reads (the rule is skipped for rows where one is null).
        sql: Predicate over the typed columns that every row must satisfy.
        text: The rule in words, used in error messages.
    """

    table: str
    column: str
    columns: tuple[str, ...]
    sql: str
    text: str


ROW_RULES: tuple[RowRule, ...] = (
    RowRule(
        "orders",
        "delivered_at",
        ("delivered_at", "ordered_at"),
        "delivered_at >= ordered_at",
        "must not be before ordered_at",
    ),
)


@dataclass(frozen=True)
class Violation:
    """One contract violation found in a histories directory.

    Attributes:
        table: The table at fault.
        column: The column at fault (``"a, b"`` for a composite key; None for the whole table).
        kind: What is wrong: ``missing_table``, ``missing_column``, ``unreadable``,
            ``wrong_type``, ``unparseable_timestamp``, ``null``, ``not_allowed``, ``rule``,
            ``future_timestamp``, ``duplicate_key``, ``foreign_key`` or ``inconsistent``.
        n_rows: How many rows are bad (0 for table- and column-level problems).
        example_keys: Keys of a few bad rows (the smallest ones, so the output is stable).
        message: One line that says all of the above, for people.
    """

    table: str
    column: str | None
    kind: str
    n_rows: int
    example_keys: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class HistoriesSummary:
    """Headline figures of a histories directory (of the tables that could be read).

    Attributes:
        rows: Rows per table.
        time_ranges: Per table, (first, last) of the column that dates its rows (naive UTC), or
            None when the table has no parseable timestamp.
        labels_by_class: Label rows per ``is_counterfeit`` value.
        labels_by_source: Label rows per ``source``.
        n_stores: Rows of the stores table.
        n_labeled_stores: Distinct stores with at least one label.
    """

    rows: dict[str, int]
    time_ranges: dict[str, tuple[datetime, datetime] | None]
    labels_by_class: dict[int, int]
    labels_by_source: dict[str, int]
    n_stores: int
    n_labeled_stores: int

    @property
    def time_range(self) -> tuple[datetime, datetime] | None:
        """First and last timestamp over all tables, or None if there is none."""
        ranges = [r for r in self.time_ranges.values() if r is not None]
        if not ranges:
            return None
        return min(r[0] for r in ranges), max(r[1] for r in ranges)


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating a histories directory.

    Attributes:
        directory: The directory validated.
        now: The instant (naive UTC) after which timestamps count as future.
        violations: Every violation found, in contract table order.
        summary: Headline figures of the readable tables.
    """

    directory: Path
    now: datetime
    violations: tuple[Violation, ...]
    summary: HistoriesSummary

    @property
    def ok(self) -> bool:
        """True when there is no violation."""
        return not self.violations

    def by_table(self) -> dict[str, list[Violation]]:
        """Violations grouped by table, tables in contract order."""
        grouped: dict[str, list[Violation]] = {}
        for violation in self.violations:
            grouped.setdefault(violation.table, []).append(violation)
        return grouped


class ContractViolationError(FeaturesError):
    """A histories directory breaks the data contract; ``.violations`` lists every problem."""

    def __init__(self, violations: Iterable[Violation], directory: str | Path | None = None):
        self.violations = tuple(violations)
        where = f" {str(directory)!r}" if directory is not None else ""
        n = len(self.violations)
        lines = [f"histories{where}: {n} contract violation{'s' if n != 1 else ''}"]
        lines += [f"  {v.message}" for v in self.violations]
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Public API


def validate_histories(
    directory: str | Path,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Check a histories directory against the contract and summarise it.

    Args:
        directory: The histories directory (one Parquet/CSV file or Parquet folder per table).
        now: Timestamps after this instant are violations. Naive values are taken as UTC.
            Defaults to the current UTC time, read when called.
        progress: Called with a short description before each step (e.g. to update a
            spinner); nothing is reported if None.

    Returns:
        The report: every violation found, and the summary of the readable tables.

    Raises:
        HistoriesError: If ``directory`` is not a directory.
    """
    directory = Path(directory)
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise HistoriesError(f"histories directory {str(directory)!r} {problem}")
    now_utc = _utc_naive(now)
    # DuckDB spills to ./.tmp by default; keep everything out of the user's directories.
    with tempfile.TemporaryDirectory(prefix="spotcheck-validate-") as spill_dir:
        con = connect()
        try:
            con.execute(f"SET temp_directory = '{_sql_str(spill_dir)}'")
            con.execute("SET enable_progress_bar = false")  # callers show their own progress
            return _validate(con, directory, now_utc, progress or (lambda _: None))
        finally:
            con.close()


def check_histories(
    directory: str | Path,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Validate a histories directory and raise if it breaks the contract.

    Later stages call this before doing any work, so bad input stops them early.

    Args:
        directory: The histories directory.
        now: See ``validate_histories``.
        progress: See ``validate_histories``.

    Returns:
        The report of a valid directory.

    Raises:
        HistoriesError: If ``directory`` is not a directory.
        ContractViolationError: If any violation is found; its message lists them all.
    """
    report = validate_histories(directory, now=now, progress=progress)
    if not report.ok:
        raise ContractViolationError(report.violations, directory)
    return report


# ---------------------------------------------------------------------------------------------
# Orchestration


def _validate(
    con: duckdb.DuckDBPyConnection,
    directory: Path,
    now: datetime,
    progress: Callable[[str], None],
) -> ValidationReport:
    """Run every check on an open connection; see ``validate_histories``."""
    progress("opening tables")
    columns, violations = _open_tables(con, directory)
    rows: dict[str, int] = {}
    time_ranges: dict[str, tuple[datetime, datetime] | None] = {}
    readable: dict[str, dict[Column, str]] = {}
    for name, cols in columns.items():
        progress(f"{name}: types, nulls, values, timestamps")
        try:
            found, rows[name], time_ranges[name] = _check_rows(con, CONTRACT[name], cols, now)
        except duckdb.Error as exc:
            violations.append(_unreadable(directory, name, exc))
            continue
        violations += found
        readable[name] = cols

    # A column with a type error is reported once; checks that read it are skipped.
    mistyped = {
        (v.table, v.column) for v in violations if v.kind in ("wrong_type", "unparseable_timestamp")
    }
    usable = {
        name: {c.name for c in cols if (name, c.name) not in mistyped}
        for name, cols in readable.items()
    }
    for name in readable:
        progress(f"{name}: duplicate keys")
        dup = _duplicate_keys(con, CONTRACT[name], usable[name])
        if dup is not None:
            violations.append(dup)
    duplicated = {v.table for v in violations if v.kind == "duplicate_key"}
    for name in readable:
        for fk in CONTRACT[name].foreign_keys:
            progress(f"{name}.{fk.column}: references to {fk.table}")
            violations += _foreign_key(con, CONTRACT[name], fk, usable, duplicated)

    order = {name: i for i, name in enumerate(CONTRACT)}
    violations.sort(key=lambda v: order[v.table])  # stable: checks keep their order per table
    summary = _summary(con, rows, time_ranges, usable)
    return ValidationReport(directory, now, tuple(violations), summary)


def _open_tables(
    con: duckdb.DuckDBPyConnection, directory: Path
) -> tuple[dict[str, dict[Column, str]], list[Violation]]:
    """Register ``raw_NAME`` and ``chk_NAME`` views for every table that can be opened.

    ``chk_NAME`` has, for each present contract column, the value TRY_CAST to its contract
    type (NULL where it does not cast) under the column's name, the raw value as ``raw__NAME``,
    and the row's example key as ``__key``.

    Returns:
        The contract columns present per opened table (with the DuckDB type each was read
        as), and the structural violations (missing table or column, unreadable file).
    """
    columns: dict[str, dict[Column, str]] = {}
    violations: list[Violation] = []
    for name, table in CONTRACT.items():
        source = find_table_source(directory, name)
        if source is None:
            violations.append(
                Violation(
                    name,
                    None,
                    "missing_table",
                    0,
                    (),
                    f"{name}: table missing; expected {name}.parquet, {name}.csv or a folder "
                    f"{name}/ of Parquet files",
                )
            )
            continue
        try:
            con.execute(f"CREATE OR REPLACE VIEW raw_{name} AS SELECT * FROM {scan_sql(source)}")
            present = {row[0]: row[1] for row in con.execute(f"DESCRIBE raw_{name}").fetchall()}
            cols = {c: present[c.name] for c in table.columns if c.name in present}
            con.execute(f"CREATE OR REPLACE VIEW chk_{name} AS {_checked_select(table, cols)}")
        except duckdb.Error as exc:
            violations.append(_unreadable(directory, name, exc))
            continue
        violations += [
            Violation(
                name,
                col.name,
                "missing_column",
                0,
                (),
                f"{name}.{col.name}: column missing in {source.name}",
            )
            for col in table.columns
            if col.name not in present
        ]
        columns[name] = cols
    return columns, violations


# ---------------------------------------------------------------------------------------------
# Typed values and example keys


_INT_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
_NAIVE_TIME_TYPES = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE"}
_TZ_TIME_TYPE = "TIMESTAMP WITH TIME ZONE"


def _typed_expr(col: Column, raw_type: str) -> tuple[str, bool]:
    """SQL for the raw column cast to its contract type, NULL where a value does not fit.

    Gives the values of ``histories.typed_select_sql`` and is stricter where a cast would
    silently change a value: DuckDB rounds ``'1.5'`` to the integer 2 and accepts NaN/inf as
    doubles, which are type errors here.

    Args:
        col: The contract column.
        raw_type: The DuckDB type the column was read as (``VARCHAR`` for CSV).

    Returns:
        The SQL, and whether it cannot fail (the physical type already fits), in which case
        the type check is skipped.
    """
    raw = f'"{col.name}"'
    if col.kind == "string":
        return (raw if raw_type == "VARCHAR" else f"CAST({raw} AS VARCHAR)"), True
    if col.kind == "bool":
        return (raw, True) if raw_type == "BOOLEAN" else (f"TRY_CAST({raw} AS BOOLEAN)", False)
    if col.kind == "int":
        if raw_type in _INT_TYPES:
            return f"CAST({raw} AS BIGINT)", True
        as_int = f"TRY_CAST({raw} AS BIGINT)"
        return f"CASE WHEN TRY_CAST({raw} AS DOUBLE) = {as_int} THEN {as_int} END", False
    if col.kind == "float":
        if raw_type in _INT_TYPES:
            return f"CAST({raw} AS DOUBLE)", True
        as_float = raw if raw_type == "DOUBLE" else f"TRY_CAST({raw} AS DOUBLE)"
        return f"CASE WHEN isfinite({as_float}) THEN {as_float} END", False
    if raw_type in _NAIVE_TIME_TYPES:
        return f"CAST({raw} AS TIMESTAMP)", True  # naive timestamps are UTC by contract
    # An instant's epoch_us is plain arithmetic, whereas casting TIMESTAMPTZ to TIMESTAMP
    # converts every value through ICU time zones and is ~20x slower.
    if raw_type == _TZ_TIME_TYPE:
        return f"make_timestamp(epoch_us({raw}))", True
    return f"make_timestamp(epoch_us(TRY_CAST({raw} AS TIMESTAMPTZ)))", False


def example_key_columns(table: Table) -> tuple[str, ...]:
    """Columns that identify a row in messages: the key, else store and event time (logins)."""
    if table.key:
        return table.key
    return ("store_id", EVENT_TIME_COLUMNS[table.name])


def _key_label(table: Table) -> str:
    return "@".join(example_key_columns(table))


def _checked_select(table: Table, cols: dict[Column, str]) -> str:
    """SELECT of the ``chk_NAME`` view; see ``_open_tables``."""
    present = {c.name for c in cols}
    exprs = []
    for col, raw_type in cols.items():
        exprs.append(f'{_typed_expr(col, raw_type)[0]} AS "{col.name}"')
        exprs.append(f'"{col.name}" AS "raw__{col.name}"')
    parts = []
    for key in example_key_columns(table):
        if key in present:
            # The typed value reads the same in CSV and Parquet; fall back to the raw text.
            parts.append(
                f'coalesce(CAST("{key}" AS VARCHAR), CAST("raw__{key}" AS VARCHAR), \'NULL\')'
            )
        else:
            parts.append("'?'")
    key_sql = " || '@' || ".join(parts)
    return f"SELECT *, {key_sql} AS __key FROM (SELECT {', '.join(exprs)} FROM raw_{table.name})"


# ---------------------------------------------------------------------------------------------
# Per-row checks: one counting scan per table, a filtered scan for examples if anything failed


@dataclass(frozen=True)
class _RowCheck:
    """A per-row check: ``bad`` is a SQL predicate over ``chk_NAME`` true for a bad row."""

    column: str
    kind: str
    bad: str
    text: str
    value: str | None = None


def _row_checks(table: Table, cols: dict[Column, str], now: datetime) -> list[_RowCheck]:
    """Every per-row check the contract (and ``ROW_RULES``) implies for the present columns."""
    now_sql = f"TIMESTAMP '{now.isoformat(sep=' ')}'"
    checks = []
    key_columns = example_key_columns(table)
    for col, raw_type in cols.items():
        typed, raw = f'"{col.name}"', f'"raw__{col.name}"'
        # The bad value is shown next to the key, unless the key already shows it.
        shown = None if col.name in key_columns else f"CAST({raw} AS VARCHAR)"
        if not _typed_expr(col, raw_type)[1]:
            kind = "unparseable_timestamp" if col.kind == "timestamp" else "wrong_type"
            bad = f"{raw} IS NOT NULL AND {typed} IS NULL"
            checks.append(_RowCheck(col.name, kind, bad, _TYPE_TEXT[col.kind], shown))
        if not col.nullable:
            checks.append(_RowCheck(col.name, "null", f"{raw} IS NULL", "must not be null"))
        if col.allowed is not None:
            values = ", ".join(_sql_literal(v) for v in col.allowed)
            text = "must be one of " + ", ".join(str(v) for v in col.allowed)
            bad = f"{typed} IS NOT NULL AND {typed} NOT IN ({values})"
            checks.append(_RowCheck(col.name, "not_allowed", bad, text, shown))
        if col.rule is not None:
            bad = f"{typed} IS NOT NULL AND NOT ({col.rule})"
            checks.append(_RowCheck(col.name, "rule", bad, col.rule_text or col.rule, shown))
        if col.kind == "timestamp":
            text = f"must not be in the future (after {now:%Y-%m-%d %H:%M:%S} UTC)"
            checks.append(
                _RowCheck(col.name, "future_timestamp", f"{typed} > {now_sql}", text, shown)
            )
    present = {c.name for c in cols}
    for rule in ROW_RULES:
        if rule.table == table.name and present.issuperset(rule.columns):
            not_null = " AND ".join(f'"{c}" IS NOT NULL' for c in rule.columns)
            bad = f"{not_null} AND NOT ({rule.sql})"
            shown = f'CAST("raw__{rule.column}" AS VARCHAR)'
            checks.append(_RowCheck(rule.column, "rule", bad, rule.text, shown))
    return checks


def _check_rows(
    con: duckdb.DuckDBPyConnection, table: Table, cols: dict[Column, str], now: datetime
) -> tuple[list[Violation], int, tuple[datetime, datetime] | None]:
    """Run the per-row checks of one table.

    Returns:
        The violations (value checks on a mistyped column dropped), the row count and the
        (first, last) of the table's summary time column.
    """
    checks = _row_checks(table, cols, now)
    view = f"chk_{table.name}"
    time_col = SUMMARY_TIME_COLUMNS.get(table.name)
    if time_col not in {c.name for c in cols}:
        time_col = None
    time_sql = f'min("{time_col}"), max("{time_col}")' if time_col else "NULL, NULL"
    counts_sql = ", ".join(f"count(*) FILTER (WHERE {c.bad})" for c in checks) or "0"
    n_rows, first, last, *counts = con.execute(
        f"SELECT count(*), {time_sql}, {counts_sql} FROM {view}"
    ).fetchone()
    time_range = (first, last) if first is not None else None

    failed = [(check, n) for check, n in zip(checks, counts, strict=False) if n]
    mistyped = {c.column for c, _ in failed if c.kind in ("wrong_type", "unparseable_timestamp")}
    failed = [
        (c, n)
        for c, n in failed
        if c.kind in ("wrong_type", "unparseable_timestamp") or c.column not in mistyped
    ]
    if not failed:
        return [], n_rows, time_range

    # Examples: a second scan that only aggregates the bad rows; three smallest keys per check.
    example_sql = ", ".join(
        f"min({{'k': __key, 'v': {c.value or 'NULL::VARCHAR'}}}, {N_EXAMPLES}) "
        f"FILTER (WHERE {c.bad})"
        for c, _ in failed
    )
    where = " OR ".join(f"({c.bad})" for c, _ in failed)
    examples = con.execute(f"SELECT {example_sql} FROM {view} WHERE {where}").fetchone()
    violations = [
        _violation(table, check.column, check.kind, n, check.text, ex)
        for (check, n), ex in zip(failed, examples, strict=True)
    ]
    return violations, n_rows, time_range


# ---------------------------------------------------------------------------------------------
# Keys and foreign keys


def _duplicate_keys(
    con: duckdb.DuckDBPyConnection, table: Table, usable: set[str]
) -> Violation | None:
    """Rows whose (non-null) key is shared with another row, or None if keys are unique."""
    if not table.key or not usable.issuperset(table.key):
        return None
    key_cols = ", ".join(f'"{k}"' for k in table.key)
    not_null = " AND ".join(f'"{k}" IS NOT NULL' for k in table.key)
    # Spelled like __key (whose parts are the typed values when non-null), but built from the
    # group columns so that no per-group aggregate is needed.
    example = " || '@' || ".join(f'CAST("{k}" AS VARCHAR)' for k in table.key)
    n_keys, n_rows, examples = con.execute(
        f"SELECT count(*), coalesce(sum(n), 0), min({example}, {N_EXAMPLES}) FROM ("
        f"  SELECT {key_cols}, count(*) AS n FROM chk_{table.name} WHERE {not_null}"
        f"  GROUP BY {key_cols} HAVING count(*) > 1)"
    ).fetchone()
    if not n_keys:
        return None
    column = ", ".join(table.key)
    keys = "key" if n_keys == 1 else "keys"
    text = f"share {n_keys:,} duplicated {keys}; keys must be unique"
    return _violation(table, column, "duplicate_key", int(n_rows), text, examples)


def _foreign_key(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    fk: ForeignKey,
    usable: dict[str, set[str]],
    duplicated: set[str],
) -> list[Violation]:
    """References to rows that do not exist, and to another store's listing or order.

    One LEFT JOIN finds both: unmatched rows, and matched rows whose parent belongs to a
    different store (checked when both tables have ``store_id`` and the parent is not
    ``stores`` itself). The store check is skipped when the parent's keys are duplicated,
    since "the" parent row is then ambiguous (the duplicates are reported already).
    """
    parent = fk.table
    if fk.column not in usable[table.name] or fk.ref_column not in usable.get(parent, set()):
        return []
    same_store = (
        parent != "stores"
        and "store_id" in usable[table.name]
        and "store_id" in usable[parent]
        and parent not in duplicated
    )
    if same_store:
        parent_sql = f'SELECT "{fk.ref_column}" AS ref, store_id FROM chk_{parent}'
        other_store = (
            "c.store_id IS NOT NULL AND p.store_id IS NOT NULL AND c.store_id <> p.store_id"
        )
    else:
        parent_sql = f'SELECT DISTINCT "{fk.ref_column}" AS ref FROM chk_{parent}'
        other_store = "false"
    example = f"{{'k': c.__key, 'v': CAST(c.\"raw__{fk.column}\" AS VARCHAR)}}"
    n_unknown, ex_unknown, n_other, ex_other = con.execute(
        f"SELECT count(*) FILTER (WHERE p.ref IS NULL),"
        f" min({example}, {N_EXAMPLES}) FILTER (WHERE p.ref IS NULL),"
        f" count(*) FILTER (WHERE p.ref IS NOT NULL),"
        f" min({example}, {N_EXAMPLES}) FILTER (WHERE p.ref IS NOT NULL)"
        f' FROM chk_{table.name} c LEFT JOIN ({parent_sql}) p ON c."{fk.column}" = p.ref'
        f' WHERE c."{fk.column}" IS NOT NULL AND (p.ref IS NULL OR ({other_store}))'
    ).fetchone()
    violations = []
    if n_unknown:
        text = f"must refer to an existing {parent}.{fk.ref_column}"
        violations.append(_violation(table, fk.column, "foreign_key", n_unknown, text, ex_unknown))
    if n_other:
        text = f"must refer to a row of {parent} with the same store_id"
        violations.append(_violation(table, fk.column, "inconsistent", n_other, text, ex_other))
    return violations


# ---------------------------------------------------------------------------------------------
# Summary and messages


def _summary(
    con: duckdb.DuckDBPyConnection,
    rows: dict[str, int],
    time_ranges: dict[str, tuple[datetime, datetime] | None],
    usable: dict[str, set[str]],
) -> HistoriesSummary:
    """Summary figures; label counts only when the label columns can be read."""
    by_class: dict[int, int] = {}
    by_source: dict[str, int] = {}
    n_labeled = 0
    labels = usable.get("labels", set())
    if {"store_id", "is_counterfeit", "source"} <= labels:
        for value, source, n in con.execute(
            "SELECT is_counterfeit, source, count(*) FROM chk_labels GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            if value is not None:
                by_class[value] = by_class.get(value, 0) + n
            if source is not None:
                by_source[source] = by_source.get(source, 0) + n
        n_labeled = con.execute("SELECT count(DISTINCT store_id) FROM chk_labels").fetchone()[0]
    return HistoriesSummary(
        rows=rows,
        time_ranges=time_ranges,
        labels_by_class=dict(sorted(by_class.items())),
        labels_by_source=dict(sorted(by_source.items())),
        n_stores=rows.get("stores", 0),
        n_labeled_stores=n_labeled,
    )


def _violation(
    table: Table,
    column: str,
    kind: str,
    n_rows: int,
    text: str,
    examples: list | None,
) -> Violation:
    """Build a violation whose message names table, column, count and example keys.

    ``examples`` holds key strings or ``{'k': key, 'v': raw value}`` structs.
    """
    keys, shown = [], []
    for example in examples or []:
        if isinstance(example, dict):
            key, value = example["k"], example["v"]
            keys.append(key)
            shown.append(key if value is None else f"{key}={_short(value)!r}")
        else:
            keys.append(example)
            shown.append(example)
    where = f"{table.name}.{column}" if ", " not in column else f"{table.name}({column})"
    rows = "row" if n_rows == 1 else "rows"
    message = f"{where}: {n_rows:,} {rows} {text}"
    if shown:
        message += f" (e.g. {_key_label(table)} {', '.join(shown)})"
    return Violation(table.name, column, kind, n_rows, tuple(keys), message)


def _unreadable(directory: Path, table: str, exc: duckdb.Error) -> Violation:
    source = find_table_source(directory, table)
    name = source.name if source is not None else table
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Violation(table, None, "unreadable", 0, (), f"{table}: cannot read {name}: {reason}")


def _short(value: object, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _sql_literal(value: str | int) -> str:
    return str(value) if isinstance(value, int) else f"'{_sql_str(value)}'"


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def _utc_naive(now: datetime | None) -> datetime:
    """``now`` as naive UTC (naive input is taken as UTC); the current time if None."""
    if now is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if now.tzinfo is not None:
        return now.astimezone(UTC).replace(tzinfo=None)
    return now
