"""Activity features: sales, buyers, reviews, disputes and returns, logistics.

Orders carry no return or delivery event of their own, so the point-in-time rule is applied
to the timestamps there are: a delivery counts only if ``delivered_at`` is before T, and a
return only for such a delivered order (the contract records ``returned`` without a time).
"""

from __future__ import annotations

from features.feature_sql import (
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
from features.text import FAKE_REVIEW_TERMS, fake_review_pattern, prefilter_terms

# A 5-star review with fewer characters than this is "short" (typical of bought reviews).
SHORT_REVIEW_CHARS = 20
# A delivery taking longer than this many days is "slow" (shipped from far away).
SLOW_DELIVERY_DAYS = 14
# Burst statistics (events per day) look at this many days before T: recent behaviour, and
# per-day grouping over the whole history would cost as much as all other features.
BURST_WINDOW = "t90"
# Buyer statistics too: almost every (store, buyer) pair is distinct, so grouping all orders
# by buyer is the costliest step of the build (~50M groups at 1M stores); the last 90 days
# show the current buyer base (and brushing with fake orders) at a sixth of the cost.
BUYER_WINDOW = "t90"
# Repeated review texts and reviewers too: hashing every review text of the whole history
# was the build's costliest review step, and brushing shows in the recent reviews.
REVIEW_REPEAT_WINDOW = "t90"


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


def _reviews_stage(d: Dialect, keep: Keep = None) -> str:
    # Substring prefilter first: the regex runs only on the few texts that could match.
    text = "lower(e.text)"
    fake = (
        f"CASE WHEN {d.contains_any(text, prefilter_terms(FAKE_REVIEW_TERMS))} "
        f"THEN {d.regexp_like(text, fake_review_pattern())} ELSE FALSE END"
    )
    short = f"length(trim(e.text)) < {SHORT_REVIEW_CHARS}"
    aggregates = {
        "r_n": "count(*)",
        "r_n30": "count(*) FILTER (WHERE e.created_at >= s.t30)",
        "r_mean": "avg(e.rating)",
        "r_mean30": "avg(e.rating) FILTER (WHERE e.created_at >= s.t30)",
        "r_std": "stddev_samp(e.rating)",
        "r_5": "count(*) FILTER (WHERE e.rating = 5)",
        "r_low": "count(*) FILTER (WHERE e.rating <= 2)",
        "r_short5": f"count(*) FILTER (WHERE e.rating = 5 AND {short})",
        "r_no_order": "count(*) FILTER (WHERE e.order_id IS NULL)",
        "r_length": "avg(length(e.text))",
        "r_fake": f"count(*) FILTER (WHERE {fake})",
    }
    return aggregate_select(aggregates, event_join("reviews", "created_at"), keep)


def _review_repeats_stage(d: Dialect, _keep: Keep = None) -> str:
    # Distinct texts and distinct reviewers over the REVIEW_REPEAT_WINDOW, from one join:
    # GROUPING SETS fill both per-snapshot key sets in one pass, where count(DISTINCT ...)
    # made the engine materialize the whole join first. GROUPING(text_key) = 1 marks the
    # reviewer set's rows; the text set's counts add up to the window's reviews.
    return f"""
SELECT snap_id,
  count(*) FILTER (WHERE by_reviewer = 0) AS rr_texts,
  count(*) FILTER (WHERE by_reviewer = 1) AS rr_reviewers,
  sum(n) FILTER (WHERE by_reviewer = 0) AS rr_n
FROM (
  SELECT snap_id, GROUPING(text_key) AS by_reviewer, count(*) AS n
  FROM (
    SELECT s.snap_id, {d.hash("e.text")} AS text_key, {d.hash("e.buyer_id")} AS reviewer
    {event_join("reviews", "created_at")} AND e.created_at >= s.{REVIEW_REPEAT_WINDOW}
  ) keyed
  GROUP BY GROUPING SETS ((snap_id, text_key), (snap_id, reviewer))
) per_key
GROUP BY snap_id"""


def _review_days_stage(_d: Dialect, _keep: Keep = None) -> str:
    return f"""
SELECT snap_id, count(*) AS rd_days, max(n) AS rd_max, sum(n) AS rd_n
FROM (
  SELECT s.snap_id, CAST(e.created_at AS DATE) AS day, count(*) AS n
  {event_join("reviews", "created_at")} AND e.created_at >= s.{BURST_WINDOW}
  GROUP BY s.snap_id, CAST(e.created_at AS DATE)
) per_day
GROUP BY snap_id"""


def _disputes_stage(_d: Dialect, keep: Keep = None) -> str:
    cf = "e.reason = 'counterfeit'"
    aggregates = {
        "d_n": "count(*)",
        "d_cf": f"count(*) FILTER (WHERE {cf})",
        "d_cf90": f"count(*) FILTER (WHERE {cf} AND e.opened_at >= s.t90)",
        "d_nad": "count(*) FILTER (WHERE e.reason = 'not_as_described')",
        "d_nr": "count(*) FILTER (WHERE e.reason = 'not_received')",
        "d_cf_last": f"max(CASE WHEN {cf} THEN e.opened_at END)",
        "d_last": "max(e.opened_at)",
    }
    return aggregate_select(aggregates, event_join("disputes", "opened_at"), keep)


STAGES: tuple[Stage, ...] = (
    Stage("orders", "o", "orders", _orders_stage),
    Stage("order_buyers", "ob", "orders", _order_buyers_stage),
    Stage("order_days", "od", "orders", _order_days_stage),
    Stage("order_regions", "or_", "orders", _order_regions_stage),
    Stage("reviews", "r", "reviews", _reviews_stage),
    Stage("review_repeats", "rr", "reviews", _review_repeats_stage),
    Stage("review_days", "rd", "reviews", _review_days_stage),
    Stage("disputes", "d", "disputes", _disputes_stage),
)

_ORDERS_NOTE = "over orders placed before T; NULL if none"
_REVIEWS_NOTE = "over reviews written before T; NULL if none"

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
        f"Share of orders placed in the 30 days before T, {_ORDERS_NOTE}.",
        "higher",
        "{value:.0%} of all its orders came in the last 30 days",
        div("o.o_n30", "o.o_n"),
    ),
    feature(
        "mean_order_amount",
        "sales",
        "float",
        f"Mean order amount, {_ORDERS_NOTE}.",
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

REVIEWS: tuple[FeatureDef, ...] = (
    feature(
        "review_count",
        "reviews",
        "int",
        "Reviews written before T (0 if none).",
        "none",
        "has {value:,.0f} reviews",
        zero("r.r_n"),
    ),
    feature(
        "reviews_30d",
        "reviews",
        "int",
        "Reviews written in the 30 days before T (0 if none).",
        "higher",
        "{value:,.0f} reviews in the last 30 days",
        zero("r.r_n30"),
    ),
    feature(
        "mean_rating",
        "reviews",
        "float",
        f"Mean star rating, {_REVIEWS_NOTE}.",
        "lower",
        "average rating {value:.1f} stars",
        "r.r_mean",
    ),
    feature(
        "mean_rating_30d",
        "reviews",
        "float",
        "Mean star rating of reviews written in the 30 days before T; NULL if none.",
        "lower",
        "average rating {value:.1f} stars in the last 30 days",
        "r.r_mean30",
    ),
    feature(
        "rating_std",
        "reviews",
        "float",
        f"Standard deviation of star ratings, {_REVIEWS_NOTE} or only one.",
        "higher",
        "ratings are polarised (spread {value:.1f} stars)",
        "r.r_std",
    ),
    feature(
        "share_5_star",
        "reviews",
        "float",
        f"Share of 5-star reviews, {_REVIEWS_NOTE}.",
        "none",
        "{value:.0%} of reviews are 5 stars",
        div("r.r_5", "r.r_n"),
    ),
    feature(
        "share_low_rating",
        "reviews",
        "float",
        f"Share of 1- and 2-star reviews, {_REVIEWS_NOTE}.",
        "higher",
        "{value:.0%} of reviews give 1 or 2 stars",
        div("r.r_low", "r.r_n"),
    ),
    feature(
        "share_short_5_star",
        "reviews",
        "float",
        f"Share of reviews that are 5-star with under {SHORT_REVIEW_CHARS} characters of "
        f"text, {_REVIEWS_NOTE}.",
        "higher",
        "{value:.0%} of reviews are terse 5-star reviews",
        div("r.r_short5", "r.r_n"),
    ),
    feature(
        "max_reviews_per_day_90d",
        "reviews",
        "int",
        "Most reviews written on a single UTC day in the 90 days before T (0 if none).",
        "higher",
        "{value:,.0f} reviews arrived in a single day",
        zero("rd.rd_max"),
    ),
    feature(
        "review_burst_ratio_90d",
        "reviews",
        "float",
        "Most reviews on one day / mean reviews per active day, over the 90 days before T; "
        "NULL without reviews in them.",
        "higher",
        "reviews came in a burst ({value:.1f}x the usual daily number)",
        div("rd.rd_max", div("rd.rd_n", "rd.rd_days")),
    ),
    feature(
        "share_reviews_without_order",
        "reviews",
        "float",
        f"Share of reviews not tied to an order, {_REVIEWS_NOTE}.",
        "higher",
        "{value:.0%} of reviews are not tied to an order",
        div("r.r_no_order", "r.r_n"),
    ),
    feature(
        "reviews_per_order",
        "reviews",
        "float",
        "Reviews before T / orders before T; NULL without orders.",
        "higher",
        "{value:.2f} reviews per order",
        div(zero("r.r_n"), "o.o_n"),
    ),
    feature(
        "duplicate_review_text_share_90d",
        "reviews",
        "float",
        "1 - distinct review texts / reviews (copy-pasted reviews), over reviews written in "
        "the 90 days before T; NULL if none.",
        "higher",
        "{value:.0%} of the last 90 days' reviews repeat another review's text",
        f"(1 - {div('rr.rr_texts', 'rr.rr_n')})",
    ),
    feature(
        "reviews_per_reviewer_90d",
        "reviews",
        "float",
        "Reviews per distinct reviewer, over reviews written in the 90 days before T; NULL "
        "if none.",
        "higher",
        "each reviewer of the last 90 days left {value:.1f} reviews on average",
        div("rr.rr_n", "rr.rr_reviewers"),
    ),
    feature(
        "mean_review_length",
        "reviews",
        "float",
        f"Mean review text length in characters, {_REVIEWS_NOTE}.",
        "lower",
        "reviews are only {value:.0f} characters long on average",
        "r.r_length",
    ),
    feature(
        "fake_mention_review_share",
        "reviews",
        "float",
        "Share of reviews whose text calls the goods fake (fake, counterfeit, not original, "
        f"knockoff, ...), {_REVIEWS_NOTE}.",
        "higher",
        "{value:.0%} of reviews say the goods are fake",
        div("r.r_fake", "r.r_n"),
    ),
)

DISPUTES: tuple[FeatureDef, ...] = (
    feature(
        "dispute_count",
        "disputes",
        "int",
        "Disputes opened before T (0 if none).",
        "higher",
        "{value:,.0f} buyer disputes",
        zero("d.d_n"),
    ),
    feature(
        "counterfeit_dispute_count",
        "disputes",
        "int",
        "Disputes with reason 'counterfeit' opened before T (0 if none).",
        "higher",
        "{value:,.0f} buyers disputed an order as counterfeit",
        zero("d.d_cf"),
    ),
    feature(
        "counterfeit_disputes_90d",
        "disputes",
        "int",
        "Counterfeit disputes opened in the 90 days before T (0 if none).",
        "higher",
        "{value:,.0f} counterfeit disputes in the last 90 days",
        zero("d.d_cf90"),
    ),
    feature(
        "counterfeit_dispute_rate",
        "disputes",
        "float",
        "Counterfeit disputes before T / orders before T; NULL without orders.",
        "higher",
        "{value:.1%} of orders were disputed as counterfeit",
        div(zero("d.d_cf"), "o.o_n"),
    ),
    feature(
        "dispute_rate",
        "disputes",
        "float",
        "All disputes before T / orders before T; NULL without orders.",
        "higher",
        "{value:.1%} of orders ended in a dispute",
        div(zero("d.d_n"), "o.o_n"),
    ),
    feature(
        "counterfeit_dispute_share",
        "disputes",
        "float",
        "Share of disputes with reason 'counterfeit', over disputes before T; NULL if none.",
        "higher",
        "{value:.0%} of its disputes are about counterfeits",
        div("d.d_cf", "d.d_n"),
    ),
    feature(
        "not_as_described_rate",
        "disputes",
        "float",
        "'not_as_described' disputes before T / orders before T; NULL without orders.",
        "higher",
        "{value:.1%} of orders were disputed as not as described",
        div(zero("d.d_nad"), "o.o_n"),
    ),
    feature(
        "not_received_rate",
        "disputes",
        "float",
        "'not_received' disputes before T / orders before T; NULL without orders.",
        "higher",
        "{value:.1%} of orders were disputed as never received",
        div(zero("d.d_nr"), "o.o_n"),
    ),
    feature(
        "days_since_last_counterfeit_dispute",
        "disputes",
        "float",
        "Days from the latest counterfeit dispute to T; NULL if there was none.",
        "lower",
        "a buyer reported a counterfeit {value:.0f} days ago",
        lambda d: days_before_as_of(d, "d.d_cf_last"),
    ),
    feature(
        "days_since_last_dispute",
        "disputes",
        "float",
        "Days from the latest dispute of any reason to T; NULL if there was none.",
        "lower",
        "last buyer dispute {value:.0f} days ago",
        lambda d: days_before_as_of(d, "d.d_last"),
    ),
    feature(
        "return_rate",
        "disputes",
        "float",
        "Share of orders returned, over orders delivered before T; NULL if none.",
        "higher",
        "{value:.0%} of delivered orders were returned",
        div("o.o_returned", "o.o_delivered"),
    ),
)

LOGISTICS: tuple[FeatureDef, ...] = (
    feature(
        "ship_from_mismatch_share",
        "logistics",
        "float",
        f"Share of orders shipped from a region other than the declared one, {_ORDERS_NOTE}.",
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
        f"Shannon entropy (nats) of the ship-from region distribution, {_ORDERS_NOTE}.",
        "higher",
        "dispatch is spread over many places (entropy {value:.2f})",
        f"(ln(or_.or_n) - {div('or_.or_n_log_n', 'or_.or_n')})",
    ),
    feature(
        "top_ship_from_region_share",
        "logistics",
        "float",
        f"Share of orders shipped from the store's most used region, {_ORDERS_NOTE}.",
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

FEATURES: tuple[FeatureDef, ...] = SALES + BUYERS + REVIEWS + DISPUTES + LOGISTICS
