"""Point-in-time store features as portable SQL, and their FeatureSpec.

The features of one row (store, as-of time T) use only events strictly before T. They are
computed from a snapshot table ``snapshots`` (one row per store and T, with the store's
attributes and the window starts ``t30``/``t60``/``t90``) in three steps:

1. ``listing_facts`` and ``brand_mentions``: per-listing facts that do not depend on T;
2. one *stage* per event table and grain (``stage_<name>``), each a single aggregation over
   the events joined to the snapshots with ``event_time < as_of``;
3. a final SELECT that left-joins every stage to the snapshots and computes each feature.

Stores without events get 0 for counts and NULL for ratios, means and "days since" (LightGBM
treats NULL as missing); every feature's description says which. The groups live in
``store_features_catalogue`` (pricing, listing text), ``store_features_activity`` (sales,
buyers, reviews, disputes, logistics) and here (storefront, account environment). The
definitions are standard SQL apart from the functions in ``features.feature_sql.Dialect``;
``render_sql(SPARK)`` gives the same pipeline for Spark SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from features import store_features_activity as activity
from features import store_features_catalogue as catalogue
from features.feature_sql import (
    DUCKDB,
    Dialect,
    FeatureDef,
    Keep,
    Stage,
    aggregate_select,
    days_before_as_of,
    div,
    event_join,
    feature,
    zero,
)
from features.spec import FeatureSpec, FeatureSpecError
from features.store_features_activity import BURST_WINDOW

# Logins at these UTC hours count as night-time (a marketplace with one time zone can shift
# the window; the feature is about accounts run from elsewhere or by scripts).
NIGHT_HOURS = (0, 6)

# Window starts added to every snapshot row, in days before as_of.
WINDOWS_DAYS = {"t30": 30, "t60": 60, "t90": 90}

STORE_COLUMNS = (
    "seller_id",
    "opened_at",
    "category",
    "storefront_template",
    "storefront_modules",
    "declared_region",
    "identity_verified",
)


def snapshots_sql(keys: str, numbered: bool = False) -> str:
    """Snapshot table from a relation ``keys(store_id, as_of)``, one row per key.

    Keys of unknown stores are dropped by the join; ``snap_id`` follows (store_id, as_of)
    order (with gaps where keys were dropped) so results are deterministic.

    Args:
        keys: Relation of distinct (store_id, as_of) keys.
        numbered: ``keys`` already has ``snap_id`` in (store_id, as_of) order.
    """
    windows = ", ".join(
        f"k.as_of - INTERVAL {days} DAY AS {name}" for name, days in WINDOWS_DAYS.items()
    )
    store_columns = ", ".join(f"st.{c}" for c in STORE_COLUMNS)
    # Numbering the narrow keys before the join: a window over the joined rows sorts them all.
    numbering = (
        keys
        if numbered
        else f"(SELECT row_number() OVER (ORDER BY store_id, as_of) AS snap_id, store_id, as_of "
        f"FROM {keys})"
    )
    return f"""
SELECT k.snap_id, k.store_id, k.as_of, {windows}, {store_columns}
FROM {numbering} k
JOIN stores st ON st.store_id = k.store_id"""


def _seller_stage(_d: Dialect, keep: Keep = None) -> str:
    # The seller's other stores already open at T (a seller re-opening stores after bans).
    aggregates = {
        "sf_other": "count(*)",
        "sf_new90": "count(*) FILTER (WHERE o.opened_at >= s.t90)",
    }
    source = (
        "FROM snapshots s JOIN stores o ON o.seller_id = s.seller_id "
        "AND o.store_id <> s.store_id AND o.opened_at < s.as_of"
    )
    return aggregate_select(aggregates, source, keep)


def _logins_stage(_d: Dialect, keep: Keep = None) -> str:
    start, end = NIGHT_HOURS
    aggregates = {
        "g_n": "count(*)",
        "g_n30": "count(*) FILTER (WHERE e.logged_at >= s.t30)",
        "g_no_wifi": "count(*) FILTER (WHERE e.wifi_id IS NULL)",
        "g_night": (
            f"count(*) FILTER (WHERE hour(e.logged_at) >= {start} AND hour(e.logged_at) < {end})"
        ),
        "g_last": "max(e.logged_at)",
    }
    return aggregate_select(aggregates, event_join("logins", "logged_at"), keep)


def _login_resources_stage(d: Dialect, _keep: Keep = None) -> str:
    # Distinct IPs, devices and Wi-Fi networks from one join: GROUPING SETS fill the three
    # per-snapshot key sets in one pass (count(DISTINCT ...) would materialize the join).
    # Keys are 64-bit hashes (cheaper than the strings; NULL stays NULL so it is not counted).
    def key(column: str) -> str:
        return f"CASE WHEN e.{column} IS NOT NULL THEN {d.hash(f'e.{column}')} END"

    return f"""
SELECT snap_id,
  count(ip) FILTER (WHERE by_ip = 0) AS gr_ips,
  count(device) FILTER (WHERE by_device = 0) AS gr_devices,
  count(device) FILTER (WHERE by_device = 0 AND recent = 1) AS gr_devices30,
  count(wifi) FILTER (WHERE by_wifi = 0) AS gr_wifi
FROM (
  SELECT snap_id, ip, device, wifi, GROUPING(ip) AS by_ip, GROUPING(device) AS by_device,
    GROUPING(wifi) AS by_wifi, max(recent) AS recent
  FROM (
    SELECT s.snap_id, {key("ip")} AS ip, {key("device_id")} AS device, {key("wifi_id")} AS wifi,
      CASE WHEN e.logged_at >= s.t30 THEN 1 ELSE 0 END AS recent
    {event_join("logins", "logged_at")}
  ) keyed
  GROUP BY GROUPING SETS ((snap_id, ip), (snap_id, device), (snap_id, wifi))
) per_key
GROUP BY snap_id"""


def _login_days_stage(_d: Dialect, _keep: Keep = None) -> str:
    return f"""
SELECT snap_id, count(*) AS gd_days, max(n) AS gd_max, sum(n) AS gd_n
FROM (
  SELECT s.snap_id, CAST(e.logged_at AS DATE) AS day, count(*) AS n
  {event_join("logins", "logged_at")} AND e.logged_at >= s.{BURST_WINDOW}
  GROUP BY s.snap_id, CAST(e.logged_at AS DATE)
) per_day
GROUP BY snap_id"""


STAGES: tuple[Stage, ...] = (
    Stage("seller", "sf", "stores", _seller_stage),
    *catalogue.STAGES,
    *activity.STAGES,
    Stage("logins", "g", "logins", _logins_stage),
    Stage("login_resources", "gr", "logins", _login_resources_stage),
    Stage("login_days", "gd", "logins", _login_days_stage),
)

STOREFRONT: tuple[FeatureDef, ...] = (
    feature(
        "storefront_template_basic",
        "storefront",
        "bool",
        "The storefront uses the marketplace's basic template (no custom design).",
        "higher",
        "uses the bare basic storefront template",
        "(s.storefront_template = 'basic')",
    ),
    feature(
        "storefront_modules",
        "storefront",
        "int",
        "Number of storefront modules (decorations, sections) the store added.",
        "lower",
        "storefront has only {value:,.0f} modules",
        "s.storefront_modules",
    ),
    feature(
        "identity_verified",
        "storefront",
        "bool",
        "The seller's identity has been verified.",
        "lower",
        "seller identity is not verified",
        "s.identity_verified",
    ),
    feature(
        "store_age_days",
        "storefront",
        "float",
        "Days from the store's opening to T.",
        "lower",
        "store opened only {value:.0f} days ago",
        lambda d: days_before_as_of(d, "s.opened_at"),
    ),
    feature(
        "category",
        "storefront",
        "category",
        "The store's main category (string category).",
        "none",
        "sells in category {value}",
        "s.category",
    ),
    feature(
        "seller_other_stores",
        "storefront",
        "int",
        "Other stores of the same seller opened before T (0 if none).",
        "higher",
        "the seller runs {value:,.0f} other stores",
        zero("sf.sf_other"),
    ),
    feature(
        "seller_new_stores_90d",
        "storefront",
        "int",
        "Other stores of the same seller opened in the 90 days before T (0 if none).",
        "higher",
        "the seller opened {value:,.0f} other stores in the last 90 days",
        zero("sf.sf_new90"),
    ),
)

_LOGINS_NOTE = "over logins before T; NULL if none"

ENVIRONMENT: tuple[FeatureDef, ...] = (
    feature(
        "login_count",
        "environment",
        "int",
        "Account logins before T (0 if none).",
        "none",
        "{value:,.0f} logins",
        zero("g.g_n"),
    ),
    feature(
        "logins_30d",
        "environment",
        "int",
        "Logins in the 30 days before T (0 if none).",
        "none",
        "{value:,.0f} logins in the last 30 days",
        zero("g.g_n30"),
    ),
    feature(
        "login_active_days_90d",
        "environment",
        "int",
        "Distinct UTC days with a login in the 90 days before T (0 if none).",
        "none",
        "logged in on {value:,.0f} different days in the last 90 days",
        zero("gd.gd_days"),
    ),
    feature(
        "logins_per_active_day_90d",
        "environment",
        "float",
        "Logins per day with a login, over the 90 days before T; NULL without logins in them.",
        "higher",
        "{value:.1f} logins per active day",
        div("gd.gd_n", "gd.gd_days"),
    ),
    feature(
        "max_logins_per_day_90d",
        "environment",
        "int",
        "Most logins on a single UTC day in the 90 days before T (0 if none).",
        "higher",
        "{value:,.0f} logins in a single day",
        zero("gd.gd_max"),
    ),
    feature(
        "distinct_ips",
        "environment",
        "int",
        "Distinct IP addresses used to log in before T (0 if none).",
        "higher",
        "logged in from {value:,.0f} different IP addresses",
        zero("gr.gr_ips"),
    ),
    feature(
        "distinct_devices",
        "environment",
        "int",
        "Distinct devices used to log in before T (0 if none).",
        "higher",
        "logged in from {value:,.0f} different devices",
        zero("gr.gr_devices"),
    ),
    feature(
        "distinct_wifi_networks",
        "environment",
        "int",
        "Distinct Wi-Fi networks seen at logins before T (0 if none).",
        "higher",
        "logged in over {value:,.0f} different Wi-Fi networks",
        zero("gr.gr_wifi"),
    ),
    feature(
        "devices_30d",
        "environment",
        "int",
        "Distinct devices used to log in in the 30 days before T (0 if none).",
        "higher",
        "{value:,.0f} devices used in the last 30 days",
        zero("gr.gr_devices30"),
    ),
    feature(
        "ips_per_login",
        "environment",
        "float",
        f"Distinct IPs / logins (IP churn), {_LOGINS_NOTE}.",
        "higher",
        "changes IP address often ({value:.2f} IPs per login)",
        div("gr.gr_ips", "g.g_n"),
    ),
    feature(
        "share_logins_without_wifi",
        "environment",
        "float",
        f"Share of logins with no Wi-Fi network recorded (mobile data, proxies), {_LOGINS_NOTE}.",
        "higher",
        "{value:.0%} of logins came without a Wi-Fi network",
        div("g.g_no_wifi", "g.g_n"),
    ),
    feature(
        "night_login_share",
        "environment",
        "float",
        f"Share of logins between {NIGHT_HOURS[0]:02d}:00 and {NIGHT_HOURS[1]:02d}:00 UTC, "
        f"{_LOGINS_NOTE}.",
        "higher",
        "{value:.0%} of logins happen at night",
        div("g.g_night", "g.g_n"),
    ),
    feature(
        "days_since_last_login",
        "environment",
        "float",
        "Days from the latest login to T; NULL without logins.",
        "none",
        "last login {value:.0f} days ago",
        lambda d: days_before_as_of(d, "g.g_last"),
    ),
)

FEATURE_DEFS: tuple[FeatureDef, ...] = (
    STOREFRONT
    + catalogue.PRICING
    + activity.SALES
    + activity.BUYERS
    + activity.REVIEWS
    + activity.DISPUTES
    + activity.LOGISTICS
    + ENVIRONMENT
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
