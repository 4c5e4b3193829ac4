"""Review features: ratings, bursts of short five-star reviews, repeated texts, fake mentions."""

from __future__ import annotations

from features.store.dialect import (
    Dialect,
    FeatureDef,
    Keep,
    Stage,
    aggregate_select,
    div,
    event_join,
    feature,
    zero,
)
from features.store.snapshots import BURST_WINDOW, REVIEW_REPEAT_WINDOW
from features.store.vocabulary import FAKE_REVIEW_TERMS, fake_review_pattern, prefilter_terms

# A 5-star review with fewer characters than this is "short" (typical of bought reviews).
SHORT_REVIEW_CHARS = 20


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


STAGES: tuple[Stage, ...] = (
    Stage("reviews", "r", "reviews", _reviews_stage),
    Stage("review_repeats", "rr", "reviews", _review_repeats_stage),
    Stage("review_days", "rd", "reviews", _review_days_stage),
)

_REVIEWS_NOTE = "over reviews written before T; NULL if none"

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
