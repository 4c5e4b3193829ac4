"""Order features: sales, buyers and logistics (ship-from region, delivery, returns).

Orders carry no return or delivery event of their own, so the point-in-time rule is applied
to the timestamps there are: a delivery counts only if ``delivered_at`` is before T, and a
return only for such a delivered order (the contract records ``returned`` without a time).
"""

from __future__ import annotations

from features.store.dialect import (
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
from features.store.snapshots import BURST_WINDOW, BUYER_WINDOW

# A delivery taking longer than this many days is "slow" (shipped from far away).
SLOW_DELIVERY_DAYS = 14


def _orders_stage(d: Dialect, keep: Keep = None) -> str:
    delivered = "e.delivered_at < s.as_of"
    delivery_days = (
        f"CASE WHEN {delivered} THEN "
        f"({d.epoch('e.delivered_at')} - {d.epoch('e.ordered_at')}) / 86400.0 END"
    )
    slow = f"e.delivered_at - e.ordered_at > INTERVAL {SLOW_DELIVERY_DAYS} DAY"
    undelivered = "e.delivered_at IS NULL OR e.delivered_at >= s.as_of"
    aggregates = {
        "o_n": "count(*)",
        "o_gmv": "sum(e.amount)",
        "o_n30": "count(*) FILTER (WHERE e.ordered_at >= s.t30)",
        "o_n30_before": "count(*) FILTER (WHERE e.ordered_at >= s.t60 AND e.ordered_at < s.t30)",
        "o_n90": "count(*) FILTER (WHERE e.ordered_at >= s.t90)",
        "o_gmv30": "sum(e.amount) FILTER (WHERE e.ordered_at >= s.t30)",
        "o_first": "min(e.ordered_at)",
        "o_last": "max(e.ordered_at)",
        "o_delivered": f"count(*) FILTER (WHERE {delivered})",
        "o_returned": f"count(*) FILTER (WHERE {delivered} AND e.returned)",
        "o_delivery_mean": f"avg({delivery_days})",
        "o_slow": f"count(*) FILTER (WHERE {delivered} AND {slow})",
        "o_old": "count(*) FILTER (WHERE e.ordered_at < s.t30)",
        "o_old_undelivered": f"count(*) FILTER (WHERE e.ordered_at < s.t30 AND ({undelivered}))",
        "o_mismatch": "count(*) FILTER (WHERE e.ship_from_region <> s.declared_region)",
    }
    return aggregate_select(aggregates, event_join("orders", "ordered_at"), keep)


def _order_buyers_stage(d: Dialect, _keep: Keep = None) -> str:
    # Two levels: orders per (snapshot, buyer), then buyer statistics per snapshot, over the
    # BUYER_WINDOW. Buyers are grouped by a 64-bit hash of their id (cheaper than the
    # string; a collision needs two buyers of the same store among ~1e19 values).
    return f"""
SELECT snap_id,
  count(*) AS ob_buyers,
  count(*) FILTER (WHERE n >= 2) AS ob_repeat,
  max(n) AS ob_top,
  sum(n) AS ob_n,
  sum(n) FILTER (WHERE n >= 2) AS ob_repeat_orders
FROM (
  SELECT s.snap_id, {d.hash("e.buyer_id")} AS buyer, count(*) AS n
  {event_join("orders", "ordered_at")} AND e.ordered_at >= s.{BUYER_WINDOW}
  GROUP BY s.snap_id, {d.hash("e.buyer_id")}
) per_buyer
GROUP BY snap_id"""


def _order_days_stage(_d: Dialect, _keep: Keep = None) -> str:
    return f"""
SELECT snap_id, count(*) AS od_days, max(n) AS od_max, sum(n) AS od_n
FROM (
  SELECT s.snap_id, CAST(e.ordered_at AS DATE) AS day, count(*) AS n
  {event_join("orders", "ordered_at")} AND e.ordered_at >= s.{BURST_WINDOW}
  GROUP BY s.snap_id, CAST(e.ordered_at AS DATE)
) per_day
GROUP BY snap_id"""


def _order_regions_stage(_d: Dialect, _keep: Keep = None) -> str:
    return f"""
SELECT snap_id, count(*) AS or_regions, max(n) AS or_top, sum(n) AS or_n,
  sum(n * ln(n)) AS or_n_log_n, count(*) FILTER (WHERE recent = 1) AS or_regions30
FROM (
  SELECT s.snap_id, e.ship_from_region, count(*) AS n,
    max(CASE WHEN e.ordered_at >= s.t30 THEN 1 ELSE 0 END) AS recent
  {event_join("orders", "ordered_at")}
  GROUP BY s.snap_id, e.ship_from_region
) per_region
GROUP BY snap_id"""


STAGES: tuple[Stage, ...] = (
    Stage("orders", "o", "orders", _orders_stage),
    Stage("order_buyers", "ob", "orders", _order_buyers_stage),
    Stage("order_days", "od", "orders", _order_days_stage),
    Stage("order_regions", "or_", "orders", _order_regions_stage),
)

ORDERS_NOTE = "over orders placed before T; NULL if none"

SALES: tuple[FeatureDef, ...] = (
    feature(
        "order_count",
        "sales",
        "int",
        "Orders placed before T (0 if none).",
        "none",
        "has {value:,.0f} orders",
        zero("o.o_n"),
    ),
    feature(
        "gmv",
        "sales",
        "float",
        "Total order amount before T (0 if none).",
        "none",
        "sold {value:,.0f} in total",
        zero("o.o_gmv"),
    ),
    feature(
        "orders_30d",
        "sales",
        "int",
        "Orders placed in the 30 days before T (0 if none).",
        "higher",
        "{value:,.0f} orders in the last 30 days",
        zero("o.o_n30"),
    ),
    feature(
        "orders_90d",
        "sales",
        "int",
        "Orders placed in the 90 days before T (0 if none).",
        "higher",
        "{value:,.0f} orders in the last 90 days",
        zero("o.o_n90"),
    ),
    feature(
        "gmv_30d",
        "sales",
        "float",
        "Order amount in the 30 days before T (0 if none).",
        "higher",
        "sold {value:,.0f} in the last 30 days",
        zero("o.o_gmv30"),
    ),
    feature(
        "order_growth_30d",
        "sales",
        "float",
        "(orders in the last 30 days + 1) / (orders in the 30 days before those + 1); 1 "
        "without orders.",
        "higher",
        "orders grew {value:.1f}x over the previous month",
        div(f"{zero('o.o_n30')} + 1", f"{zero('o.o_n30_before')} + 1"),
    ),
    feature(
        "recent_order_share_30d",
        "sales",
        "float",
        f"Share of orders placed in the 30 days before T, {ORDERS_NOTE}.",
        "higher",
        "{value:.0%} of all its orders came in the last 30 days",
        div("o.o_n30", "o.o_n"),
    ),
    feature(
        "mean_order_amount",
        "sales",
        "float",
        f"Mean order amount, {ORDERS_NOTE}.",
        "none",
        "average order {value:,.2f}",
        div("o.o_gmv", "o.o_n"),
    ),
    feature(
        "order_active_days_90d",
        "sales",
        "int",
        "Distinct UTC days with at least one order in the 90 days before T (0 if none).",
        "none",
        "sold on {value:,.0f} different days in the last 90 days",
        zero("od.od_days"),
    ),
    feature(
        "max_orders_per_day_90d",
        "sales",
        "int",
        "Most orders on a single UTC day in the 90 days before T (0 if none).",
        "higher",
        "received {value:,.0f} orders in a single day",
        zero("od.od_max"),
    ),
    feature(
        "order_burst_ratio_90d",
        "sales",
        "float",
        "Most orders on one day / mean orders per active day, over the 90 days before T; "
        "NULL without orders in them.",
        "higher",
        "its busiest day had {value:.1f}x its usual orders",
        div("od.od_max", div("od.od_n", "od.od_days")),
    ),
    feature(
        "days_since_first_order",
        "sales",
        "float",
        "Days from the first order to T; NULL without orders.",
        "lower",
        "first sale only {value:.0f} days ago",
        lambda d: days_before_as_of(d, "o.o_first"),
    ),
    feature(
        "days_since_last_order",
        "sales",
        "float",
        "Days from the latest order to T; NULL without orders.",
        "none",
        "last sale {value:.0f} days ago",
        lambda d: days_before_as_of(d, "o.o_last"),
    ),
    feature(
        "orders_per_listing",
        "sales",
        "float",
        "Orders before T / listings before T; NULL without listings.",
        "none",
        "{value:.1f} orders per listing",
        div(zero("o.o_n"), "l.l_n"),
    ),
)

_BUYERS_NOTE = "over orders placed in the 90 days before T; NULL if none"

BUYERS: tuple[FeatureDef, ...] = (
    feature(
        "distinct_buyers_90d",
        "buyers",
        "int",
        "Distinct buyers who ordered in the 90 days before T (0 if none).",
        "none",
        "{value:,.0f} different buyers in the last 90 days",
        zero("ob.ob_buyers"),
    ),
    feature(
        "repeat_buyer_share_90d",
        "buyers",
        "float",
        "Share of buyers with two or more orders, over buyers who ordered in the 90 days "
        "before T (orders in that window); NULL if none.",
        "lower",
        "only {value:.0%} of recent buyers came back",
        div("ob.ob_repeat", "ob.ob_buyers"),
    ),
    feature(
        "orders_per_buyer_90d",
        "buyers",
        "float",
        f"Orders per distinct buyer, {_BUYERS_NOTE}.",
        "none",
        "{value:.1f} orders per buyer in the last 90 days",
        div("ob.ob_n", "ob.ob_buyers"),
    ),
    feature(
        "top_buyer_order_share_90d",
        "buyers",
        "float",
        f"Share of orders from the store's most frequent buyer, {_BUYERS_NOTE}.",
        "higher",
        "one buyer placed {value:.0%} of its recent orders",
        div("ob.ob_top", "ob.ob_n"),
    ),
    feature(
        "repeat_buyer_order_share_90d",
        "buyers",
        "float",
        f"Share of orders placed by buyers with two or more orders, {_BUYERS_NOTE}.",
        "lower",
        "only {value:.0%} of recent orders come from returning buyers",
        div(zero("ob.ob_repeat_orders"), "ob.ob_n"),
    ),
)

LOGISTICS: tuple[FeatureDef, ...] = (
    feature(
        "ship_from_mismatch_share",
        "logistics",
        "float",
        f"Share of orders shipped from a region other than the declared one, {ORDERS_NOTE}.",
        "higher",
        "{value:.0%} of orders ship from somewhere other than its declared region",
        div("o.o_mismatch", "o.o_n"),
    ),
    feature(
        "ship_from_region_count",
        "logistics",
        "int",
        "Distinct ship-from regions of orders before T (0 if none).",
        "higher",
        "ships from {value:,.0f} different regions",
        zero("or_.or_regions"),
    ),
    feature(
        "ship_from_regions_30d",
        "logistics",
        "int",
        "Distinct ship-from regions of orders in the 30 days before T (0 if none).",
        "higher",
        "shipped from {value:,.0f} regions in the last 30 days",
        zero("or_.or_regions30"),
    ),
    feature(
        "ship_from_region_entropy",
        "logistics",
        "float",
        f"Shannon entropy (nats) of the ship-from region distribution, {ORDERS_NOTE}.",
        "higher",
        "dispatch is spread over many places (entropy {value:.2f})",
        f"(ln(or_.or_n) - {div('or_.or_n_log_n', 'or_.or_n')})",
    ),
    feature(
        "top_ship_from_region_share",
        "logistics",
        "float",
        f"Share of orders shipped from the store's most used region, {ORDERS_NOTE}.",
        "none",
        "{value:.0%} of orders ship from one region",
        div("or_.or_top", "or_.or_n"),
    ),
    feature(
        "delivery_days_mean",
        "logistics",
        "float",
        "Mean days from order to delivery, over orders delivered before T; NULL if none.",
        "higher",
        "deliveries take {value:.1f} days on average",
        "o.o_delivery_mean",
    ),
    feature(
        "slow_delivery_share",
        "logistics",
        "float",
        f"Share of deliveries that took over {SLOW_DELIVERY_DAYS} days, over orders delivered "
        "before T; NULL if none.",
        "higher",
        f"{{value:.0%}} of deliveries took over {SLOW_DELIVERY_DAYS} days",
        div("o.o_slow", "o.o_delivered"),
    ),
    feature(
        "undelivered_share_30d",
        "logistics",
        "float",
        "Share of orders placed over 30 days before T that were not delivered before T; NULL "
        "if none.",
        "higher",
        "{value:.0%} of orders older than a month were never delivered",
        div("o.o_old_undelivered", "o.o_old"),
    ),
)
