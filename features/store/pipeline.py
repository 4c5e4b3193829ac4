"""The stage pipeline: every store feature, the stages they read, and the SQL that joins them.

The features of one row (store, as-of time T) use only events strictly before T. They are
computed from the snapshot table (``features.store.snapshots``: one row per store and T) in
three steps:

1. ``listing_facts`` and ``brand_mentions``: per-listing facts that do not depend on T;
2. one *stage* per event table and grain (``stage_<name>``), each a single aggregation over
   the events joined to the snapshots with ``event_time < as_of``;
3. a final SELECT that left-joins every stage to the snapshots and computes each feature.

Stores without events get 0 for counts and NULL for ratios, means and "days since" (LightGBM
treats NULL as missing); every feature's description says which. Each feature family has its
module (``storefront``, ``catalogue`` for pricing and listing text, ``orders`` for sales,
buyers and logistics, ``reviews``, ``disputes``, ``environment``); this one puts them in
order. The definitions are standard SQL apart from the functions in
``features.store.dialect.Dialect``; ``render_sql(SPARK)`` gives the same pipeline for Spark
SQL, and ``features.store.engine`` runs it on DuckDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from features.spec import FeatureSpec, FeatureSpecError
from features.store import catalogue, disputes, environment, orders, reviews, storefront
from features.store.dialect import DUCKDB, Dialect, FeatureDef, Stage
from features.store.snapshots import snapshots_sql

STAGES: tuple[Stage, ...] = (
    *storefront.STAGES,
    *catalogue.STAGES,
    *orders.STAGES,
    *reviews.STAGES,
    *disputes.STAGES,
    *environment.STAGES,
)

FEATURE_DEFS: tuple[FeatureDef, ...] = (
    storefront.STOREFRONT
    + catalogue.PRICING
    + orders.SALES
    + orders.BUYERS
    + reviews.REVIEWS
    + disputes.DISPUTES
    + orders.LOGISTICS
    + environment.ENVIRONMENT
    + catalogue.TEXT
)


def base_feature_spec() -> FeatureSpec:
    """The spec of the store features computed here (every group but the link graph)."""
    return FeatureSpec(tuple(f.feature for f in FEATURE_DEFS))


def feature_defs(names: Iterable[str] | None = None) -> tuple[FeatureDef, ...]:
    """The definitions of the named base features (all if None), in spec order.

    Raises:
        FeatureSpecError: If a name is not a base feature.
    """
    if names is None:
        return FEATURE_DEFS
    wanted = set(names)
    unknown = sorted(wanted - {f.feature.name for f in FEATURE_DEFS})
    if unknown:
        raise FeatureSpecError(f"not store features: {', '.join(unknown)}")
    return tuple(f for f in FEATURE_DEFS if f.feature.name in wanted)


_ALIAS_REF = re.compile(r"\b([a-z][a-z_]*)\.")


def stages_for(defs: Iterable[FeatureDef], d: Dialect = DUCKDB) -> tuple[Stage, ...]:
    """The stages whose aggregates the given feature expressions use, in execution order."""
    used: set[str] = set()
    for definition in defs:
        used.update(_ALIAS_REF.findall(definition.expr(d)))
    return tuple(st for st in STAGES if st.alias in used)


def stage_sql(stage: Stage, defs: Iterable[FeatureDef], d: Dialect = DUCKDB) -> str:
    """A stage's SELECT computing only the aggregates the given features use.

    (Two-level stages are computed whole: their aggregates share one costly inner grouping.)
    """
    pattern = re.compile(rf"\b{re.escape(stage.alias)}\.([a-z0-9_]+)")
    used = frozenset(c for f in defs for c in pattern.findall(f.expr(d)))
    return stage.sql(d, used)


def final_sql(d: Dialect = DUCKDB, names: Iterable[str] | None = None) -> str:
    """The SELECT that joins the stages to the snapshots and computes the features.

    Args:
        d: SQL dialect.
        names: Base features to compute (all if None); only their stages are joined.

    Returns:
        SQL yielding ``snap_id``, ``store_id``, ``as_of`` and one column per feature, in spec
        order (rows in no particular order; ``snap_id`` follows (store_id, as_of)).
    """
    defs = feature_defs(names)
    columns = ",\n  ".join(
        f"{d.cast(f.expr(d), f.feature.dtype)} AS {f.feature.name}" for f in defs
    )
    joins = "\n".join(
        f"LEFT JOIN stage_{st.name} {st.alias} ON {st.alias}.snap_id = s.snap_id"
        for st in stages_for(defs, d)
    )
    return f"SELECT s.snap_id, s.store_id, s.as_of,\n  {columns}\nFROM snapshots s\n{joins}"


def render_sql(d: Dialect, keys: str = "snapshot_keys", brands: list[str] | None = None) -> dict:
    """Every statement of the pipeline for one dialect, in execution order.

    Args:
        d: Target SQL dialect.
        keys: Relation with the (store_id, as_of) pairs to compute.
        brands: Known brand names for the brand-mention pattern (found with
            ``catalogue.brands_sql()`` on the listings).

    Returns:
        Mapping of relation name to its SELECT: ``snapshots``, ``listing_facts``,
        ``brand_mentions``, ``stage_<name>`` for every stage, then ``features``.
    """
    pattern = catalogue.brand_pattern(brands or [])
    statements = {
        "snapshots": snapshots_sql(keys),
        "listing_facts": catalogue.listing_facts_sql(d, pattern),
        "brand_mentions": catalogue.brand_mentions_sql(d, pattern),
    }
    statements.update({f"stage_{st.name}": stage_sql(st, FEATURE_DEFS, d) for st in STAGES})
    statements["features"] = final_sql(d)
    return statements
