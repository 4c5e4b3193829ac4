"""Building blocks for engine-portable feature SQL.

Every store feature is defined as standard SQL over two kinds of relations:

* a *stage*: one ``SELECT ... GROUP BY s.snap_id`` over the snapshot table ``s``
  (one row per store and as-of time) joined to one event table with ``event_time < s.as_of``.
  It yields intermediate aggregates whose names carry the stage's prefix;
* a *feature*: one expression over the stages' aggregates, evaluated in a final SELECT that
  left-joins every stage to the snapshot table.

The few functions that differ between engines go through a ``Dialect``, so the same
definitions render for DuckDB (the embedded default, tested) and Spark SQL (for a later,
distributed run; rendered but not executed in this repository).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from features.spec import Feature, FeatureDtype, RiskDirection

# SQL type each spec dtype is cast to in the final SELECT (same names in DuckDB and Spark).
SQL_TYPES: dict[str, str] = {
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "category": "STRING",
}

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class Dialect:
    r"""The engine-specific spelling of the handful of non-standard functions used.

    Attributes:
        name: Engine name.
        quantiles_template: Exact quantiles aggregate returning an array, with ``{x}`` and
            ``{ps}`` (a comma-separated list of fractions).
        element_template: Element of an array, with ``{a}`` and the 1-based ``{i}``.
        hash_template: 64-bit hash of one or more values, with ``{x}``.
        epoch_template: Seconds since 1970 of a timestamp, as a double, with ``{x}``.
        contains_template: Substring test, with ``{s}`` and ``{sub}``.
        regexp_like_template: Boolean regex search, with ``{s}`` and ``{p}``.
        regexp_replace_template: Replace every regex match, with ``{s}``, ``{p}``, ``{r}``.
        explode_template: One output row per element of an array, with ``{x}``.
        string_type: Name of the string type.
        backslash_escapes: Whether string literals treat ``\`` as an escape character.
    """

    name: str
    quantiles_template: str
    element_template: str
    hash_template: str
    contains_template: str
    epoch_template: str
    regexp_like_template: str
    regexp_replace_template: str
    explode_template: str
    string_type: str
    backslash_escapes: bool

    def quantiles(self, x: str, ps: tuple[float, ...]) -> str:
        """Exact quantiles of ``x`` (linear interpolation) as one array, in one sort."""
        return self.quantiles_template.format(x=x, ps=", ".join(str(p) for p in ps))

    def element(self, array: str, index: int) -> str:
        """The ``index``-th (1-based) element of ``array``."""
        return self.element_template.format(a=array, i=index)

    def hash(self, *values: str) -> str:
        """64-bit hash of the values (group keys that are cheaper than long strings)."""
        return self.hash_template.format(x=", ".join(values))

    def epoch(self, x: str) -> str:
        """Seconds since 1970-01-01 of timestamp ``x`` as a double."""
        return self.epoch_template.format(x=x)

    def contains_any(self, s: str, substrings: Iterable[str]) -> str:
        """True where string expression ``s`` contains one of ``substrings`` (no regex)."""
        tests = [self.contains_template.format(s=s, sub=self.literal(x)) for x in substrings]
        return "(" + " OR ".join(tests) + ")" if tests else "FALSE"

    def regexp_like(self, s: str, pattern: str) -> str:
        """True where string expression ``s`` contains a match of ``pattern``."""
        return self.regexp_like_template.format(s=s, p=self.literal(pattern))

    def regexp_replace(self, s: str, pattern: str, replacement: str) -> str:
        """``s`` with every match of ``pattern`` replaced."""
        return self.regexp_replace_template.format(
            s=s, p=self.literal(pattern), r=self.literal(replacement)
        )

    def explode(self, x: str) -> str:
        """Set-returning call that yields one row per element of array ``x``."""
        return self.explode_template.format(x=x)

    def literal(self, text: str) -> str:
        """Quote ``text`` as a SQL string literal."""
        if self.backslash_escapes:
            escaped = text.replace("\\", "\\\\").replace("'", "\\'")
        else:
            escaped = text.replace("'", "''")
        return f"'{escaped}'"

    def cast(self, expr: str, dtype: FeatureDtype) -> str:
        """Cast ``expr`` to the SQL type of a spec dtype."""
        sql_type = self.string_type if dtype == "category" else SQL_TYPES[dtype]
        return f"CAST({expr} AS {sql_type})"


DUCKDB = Dialect(
    name="duckdb",
    quantiles_template="quantile_cont({x}, [{ps}])",
    element_template="{a}[{i}]",
    hash_template="hash({x})",
    contains_template="contains({s}, {sub})",
    epoch_template="epoch({x})",
    regexp_like_template="regexp_matches({s}, {p})",
    regexp_replace_template="regexp_replace({s}, {p}, {r}, 'g')",
    explode_template="unnest({x})",
    string_type="VARCHAR",
    backslash_escapes=False,
)

SPARK = Dialect(
    name="spark",
    quantiles_template="percentile({x}, array({ps}))",
    element_template="element_at({a}, {i})",
    hash_template="xxhash64({x})",
    contains_template="(instr({s}, {sub}) > 0)",
    epoch_template="(unix_micros({x}) / 1e6)",
    regexp_like_template="({s} RLIKE {p})",
    regexp_replace_template="regexp_replace({s}, {p}, {r})",
    explode_template="explode({x})",
    string_type="STRING",
    backslash_escapes=True,
)

Keep = frozenset[str] | None
"""Aggregate columns a stage must compute (None: all of them)."""


@dataclass(frozen=True)
class Stage:
    """One aggregation pass over an event table, keyed by ``snap_id``.

    Attributes:
        name: Short name; the materialized relation is ``stage_<name>``.
        alias: Alias used for the stage in feature expressions; its columns start with it.
        source: The contract table the stage reads (for progress reports).
        sql: Renders the stage's SELECT for a dialect, computing at least the aggregate
            columns given (all when None).
    """

    name: str
    alias: str
    source: str
    sql: Callable[[Dialect, Keep], str]


@dataclass(frozen=True)
class FeatureDef:
    """A spec feature together with the SQL expression that computes it.

    Attributes:
        feature: The spec entry.
        expr: Renders the expression (over ``s.*`` and stage aliases) for a dialect.
    """

    feature: Feature
    expr: Callable[[Dialect], str]


def feature(
    name: str,
    group: str,
    dtype: FeatureDtype,
    description: str,
    risk: RiskDirection,
    reason: str,
    expr: str | Callable[[Dialect], str],
) -> FeatureDef:
    """Declare one feature.

    ``expr`` is SQL, or a function of the dialect for the few expressions that need
    engine-specific functions.
    """
    render = expr if callable(expr) else (lambda _d, text=expr: text)
    return FeatureDef(Feature(name, group, dtype, description, risk, reason), render)


def div(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` as a double, NULL when the denominator is 0 or NULL."""
    return f"(CAST({numerator} AS DOUBLE) / NULLIF({denominator}, 0))"


def zero(expr: str) -> str:
    """``expr``, or 0 when NULL (a count for a store without events)."""
    return f"COALESCE({expr}, 0)"


def days_before_as_of(d: Dialect, timestamp: str) -> str:
    """Days between ``timestamp`` and the row's as-of time (NULL if ``timestamp`` is)."""
    return f"(({d.epoch('s.as_of')} - {d.epoch(timestamp)}) / {SECONDS_PER_DAY})"


def aggregate_select(aggregates: dict[str, str], source: str, keep: Keep = None) -> str:
    """One-level stage: ``SELECT s.snap_id, <aggregates> <source> GROUP BY s.snap_id``.

    Args:
        aggregates: Output column -> aggregate expression.
        source: FROM clause (see ``event_join``).
        keep: Only these output columns (all when None); unknown names are ignored.
    """
    items = [
        f"{expr} AS {name}" for name, expr in aggregates.items() if keep is None or name in keep
    ]
    select = ",\n  ".join(["s.snap_id", *items])
    return f"SELECT {select}\n{source}\nGROUP BY s.snap_id"


def event_join(table: str, time_column: str) -> str:
    """FROM clause joining the snapshots to events of a store strictly before its as-of."""
    return (
        f"FROM snapshots s JOIN {table} e ON e.store_id = s.store_id AND e.{time_column} < s.as_of"
    )
