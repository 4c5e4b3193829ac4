"""Catalogue features: pricing against the brand's reference price, and listing text.

Listings are first reduced once to ``listing_facts`` (one row per listing with its price
ratio and text flags, independent of any as-of time) and ``brand_mentions`` (the brands a
listing's title or image text names besides its own), so the costly text matching runs once
per listing rather than once per snapshot.
"""

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
from features.store.vocabulary import (
    HARMLESS_PHRASES,
    REPLICA_TERMS,
    harmless_pattern,
    prefilter_terms,
    replica_pattern,
    terms_pattern,
)

# Brands shorter than this are not searched for in titles (too many false matches).
MIN_BRAND_CHARS = 2


def brands_sql() -> str:
    """Distinct normalised brands of all listings, to build the brand-name pattern from."""
    return (
        "SELECT DISTINCT NULLIF(lower(trim(brand)), '') AS brand FROM listings "
        f"WHERE length(trim(brand)) >= {MIN_BRAND_CHARS} ORDER BY brand"
    )


def brand_pattern(brands: list[str]) -> str | None:
    """Regex matching any known brand name as whole words, or None without brands."""
    return terms_pattern(brands) if brands else None


def listing_facts_sql(d: Dialect, brands: str | None) -> str:
    """One row per listing: brand, price ratio and text flags (no time filter).

    Args:
        d: SQL dialect.
        brands: ``brand_pattern`` of the marketplace's brands (None: there are none).

    Returns:
        SELECT over ``listings``; ``title_mentions``/``image_mentions`` keep the lower-cased
        text only where it names a brand other than the listing's own (a few listings), for
        ``brand_mentions_sql`` to extract the names from.
    """

    def replica_flag(text: str) -> str:
        # Cheapest test first: most texts contain no replica term even as a substring, and
        # harmless look-alike phrases are blanked out only where one occurs.
        replica = replica_pattern()
        cleaned = d.regexp_replace(text, harmless_pattern(), " ")
        return (
            f"CASE WHEN NOT {d.contains_any(text, prefilter_terms(REPLICA_TERMS))} THEN FALSE "
            f"WHEN NOT {d.regexp_like(text, replica)} THEN FALSE "
            f"WHEN NOT {d.contains_any(text, HARMLESS_PHRASES)} THEN TRUE "
            f"ELSE {d.regexp_like(cleaned, replica)} END"
        )

    def other_brand_text(text: str) -> str:
        if brands is None:
            return f"CAST(NULL AS {d.string_type})"
        without_own = f"CASE WHEN brand IS NULL THEN {text} ELSE replace({text}, brand, ' ') END"
        return f"CASE WHEN {d.regexp_like(without_own, brands)} THEN {text} END"

    return f"""
SELECT listing_id, store_id, listed_at, brand, price, stock,
  CASE WHEN brand IS NOT NULL THEN reference_price END AS brand_reference,
  CASE WHEN brand IS NOT NULL THEN price / reference_price END AS price_ratio,
  length(title_text) AS title_length,
  {replica_flag("title_text")} AS replica_title,
  image_lower IS NOT NULL AS has_image_text,
  CASE WHEN image_lower IS NOT NULL THEN {replica_flag("image_lower")} END AS replica_image_text,
  {other_brand_text("title_text")} AS title_mentions,
  {other_brand_text("image_lower")} AS image_mentions
FROM (
  SELECT listing_id, store_id, listed_at, price, reference_price, stock,
    NULLIF(lower(trim(brand)), '') AS brand,
    lower(title) AS title_text,
    NULLIF(lower(trim(image_text)), '') AS image_lower
  FROM listings
) lowered"""


def brand_mentions_sql(d: Dialect, brands: str | None) -> str:
    """Brands named in a listing's title or image text other than the listing's own brand.

    Each mention carries the mentioned brand's first appearance on the marketplace
    (``first_seen``), so that a snapshot counts only brands already known at its as-of time:
    the brand vocabulary itself is point-in-time.
    """
    if brands is None:
        text = d.string_type
        return (
            f"SELECT CAST(NULL AS {text}) AS listing_id, CAST(NULL AS {text}) AS store_id, "
            f"CAST(NULL AS TIMESTAMP) AS listed_at, CAST(NULL AS {text}) AS source, "
            f"CAST(NULL AS {text}) AS brand, CAST(NULL AS TIMESTAMP) AS first_seen "
            "WHERE 1 = 0"
        )
    pattern = d.literal(brands)
    return f"""
WITH first_seen AS (
  SELECT brand, min(listed_at) AS first_seen FROM listing_facts
  WHERE brand IS NOT NULL GROUP BY brand
), mentions AS (
  SELECT listing_id, store_id, listed_at, brand AS own_brand, 'title' AS source,
    {d.explode(f"regexp_extract_all(title_mentions, {pattern}, 1)")} AS mentioned
  FROM listing_facts WHERE title_mentions IS NOT NULL
  UNION ALL
  SELECT listing_id, store_id, listed_at, brand AS own_brand, 'image' AS source,
    {d.explode(f"regexp_extract_all(image_mentions, {pattern}, 1)")} AS mentioned
  FROM listing_facts WHERE image_mentions IS NOT NULL
)
SELECT DISTINCT m.listing_id, m.store_id, m.listed_at, m.source, m.mentioned AS brand,
  f.first_seen
FROM mentions m JOIN first_seen f ON f.brand = m.mentioned
WHERE m.own_brand IS NULL OR m.mentioned <> m.own_brand"""


def _listings_stage(d: Dialect, keep: Keep = None) -> str:
    ratio = "e.price_ratio"
    aggregates = {
        "l_n": "count(*)",
        "l_n30": "count(*) FILTER (WHERE e.listed_at >= s.t30)",
        "l_branded": "count(e.brand)",
        "l_priced": f"count({ratio})",
        "l_ratio_quantiles": d.quantiles(ratio, (0.1, 0.5)),
        "l_ratio_min": f"min({ratio})",
        "l_ratio_mean": f"avg({ratio})",
        "l_ratio_std": f"stddev_samp({ratio})",
        "l_below_half": f"count(*) FILTER (WHERE {ratio} < 0.5)",
        "l_below_30": f"count(*) FILTER (WHERE {ratio} < 0.3)",
        "l_above_reference": f"count(*) FILTER (WHERE {ratio} > 1.0)",
        "l_log_reference": "avg(ln(e.brand_reference))",
        "l_log_price": "avg(ln(e.price))",
        "l_stock": "sum(e.stock)",
        "l_log_stock": "avg(ln(1 + e.stock))",
        "l_replica_title": "count(*) FILTER (WHERE e.replica_title)",
        "l_image_text": "count(*) FILTER (WHERE e.has_image_text)",
        "l_replica_image": "count(*) FILTER (WHERE e.replica_image_text)",
        "l_replica_any": "count(*) FILTER (WHERE e.replica_title OR e.replica_image_text)",
        "l_title_length": "avg(e.title_length)",
    }
    return aggregate_select(aggregates, event_join("listing_facts", "listed_at"), keep)


def _listing_brands_stage(_d: Dialect, _keep: Keep = None) -> str:
    # Two levels: listings per (snapshot, brand), then the concentration per snapshot.
    return f"""
SELECT snap_id, count(*) AS lb_brands, max(n) AS lb_top, sum(n) AS lb_n,
  sum(n * n) AS lb_n_squared
FROM (
  SELECT s.snap_id, e.brand, count(*) AS n
  {event_join("listing_facts", "listed_at")}
  WHERE e.brand IS NOT NULL
  GROUP BY s.snap_id, e.brand
) per_brand
GROUP BY snap_id"""


def _brand_mentions_stage(_d: Dialect, keep: Keep = None) -> str:
    aggregates = {
        "lm_title_listings": "count(DISTINCT CASE WHEN e.source = 'title' THEN e.listing_id END)",
        "lm_title_mentions": "count(CASE WHEN e.source = 'title' THEN 1 END)",
        "lm_image_listings": "count(DISTINCT CASE WHEN e.source = 'image' THEN e.listing_id END)",
    }
    source = f"{event_join('brand_mentions', 'listed_at')} AND e.first_seen < s.as_of"
    return aggregate_select(aggregates, source, keep)


STAGES: tuple[Stage, ...] = (
    Stage("listings", "l", "listings", _listings_stage),
    Stage("listing_brands", "lb", "listings", _listing_brands_stage),
    Stage("brand_mentions", "lm", "listings", _brand_mentions_stage),
)

_RATIO_NOTE = "over branded listings with a reference price listed before T; NULL if none"
_LISTING_NOTE = "over listings listed before T; NULL if none"

PRICING: tuple[FeatureDef, ...] = (
    feature(
        "listing_count",
        "pricing",
        "int",
        "Listings created before T (0 if none).",
        "none",
        "has {value:,.0f} listings",
        zero("l.l_n"),
    ),
    feature(
        "listings_30d",
        "pricing",
        "int",
        "Listings created in the 30 days before T (0 if none).",
        "higher",
        "created {value:,.0f} listings in the last 30 days",
        zero("l.l_n30"),
    ),
    feature(
        "price_to_reference_median",
        "pricing",
        "float",
        f"Median of price / brand reference price, {_RATIO_NOTE}.",
        "lower",
        "sells at a median {value:.0%} of the brands' reference price",
        lambda d: d.element("l.l_ratio_quantiles", 2),
    ),
    feature(
        "price_to_reference_p10",
        "pricing",
        "float",
        f"10th percentile of price / brand reference price, {_RATIO_NOTE}.",
        "lower",
        "its cheapest tenth of branded listings sell at {value:.0%} of reference price",
        lambda d: d.element("l.l_ratio_quantiles", 1),
    ),
    feature(
        "price_to_reference_min",
        "pricing",
        "float",
        f"Lowest price / brand reference price, {_RATIO_NOTE}.",
        "lower",
        "one listing sells at only {value:.0%} of the brand's reference price",
        "l.l_ratio_min",
    ),
    feature(
        "price_to_reference_mean",
        "pricing",
        "float",
        f"Mean of price / brand reference price, {_RATIO_NOTE}.",
        "lower",
        "sells at {value:.0%} of the brands' reference price on average",
        "l.l_ratio_mean",
    ),
    feature(
        "price_to_reference_std",
        "pricing",
        "float",
        f"Standard deviation of price / brand reference price, {_RATIO_NOTE} or only one.",
        "none",
        "price-to-reference ratios vary by {value:.2f}",
        "l.l_ratio_std",
    ),
    feature(
        "share_listings_below_half_reference",
        "pricing",
        "float",
        f"Share priced below 50% of the brand's reference price, {_RATIO_NOTE}.",
        "higher",
        "{value:.0%} of branded listings cost less than half the brand's price",
        div("l.l_below_half", "l.l_priced"),
    ),
    feature(
        "share_listings_below_30pct_reference",
        "pricing",
        "float",
        f"Share priced below 30% of the brand's reference price, {_RATIO_NOTE}.",
        "higher",
        "{value:.0%} of branded listings cost less than 30% of the brand's price",
        div("l.l_below_30", "l.l_priced"),
    ),
    feature(
        "share_listings_above_reference",
        "pricing",
        "float",
        f"Share priced above the brand's reference price, {_RATIO_NOTE}.",
        "lower",
        "{value:.0%} of branded listings are priced above the brand's price",
        div("l.l_above_reference", "l.l_priced"),
    ),
    feature(
        "share_branded_listings",
        "pricing",
        "float",
        f"Share of listings that name a brand, {_LISTING_NOTE}.",
        "higher",
        "{value:.0%} of listings are branded goods",
        div("l.l_branded", "l.l_n"),
    ),
    feature(
        "brand_count",
        "pricing",
        "int",
        "Distinct brands among listings created before T (0 if none).",
        "higher",
        "sells {value:,.0f} different brands",
        zero("lb.lb_brands"),
    ),
    feature(
        "top_brand_share",
        "pricing",
        "float",
        "Share of branded listings that carry the store's most-listed brand, over branded "
        "listings listed before T; NULL if none.",
        "none",
        "{value:.0%} of its branded listings are one brand",
        div("lb.lb_top", "lb.lb_n"),
    ),
    feature(
        "brand_concentration_hhi",
        "pricing",
        "float",
        "Herfindahl index of brands over branded listings listed before T (1 = a single "
        "brand); NULL if none.",
        "none",
        "brand concentration index {value:.2f}",
        div("lb.lb_n_squared", "(lb.lb_n * lb.lb_n)"),
    ),
    feature(
        "mean_log_reference_price",
        "pricing",
        "float",
        "Mean natural log of the brand reference price (how premium the brands are), "
        f"{_RATIO_NOTE}.",
        "higher",
        "sells premium brands (mean log reference price {value:.1f})",
        "l.l_log_reference",
    ),
    feature(
        "mean_log_listing_price",
        "pricing",
        "float",
        f"Mean natural log of the listing price (typical price level), {_LISTING_NOTE}.",
        "none",
        "typical listing price {value:.1f} (log scale)",
        "l.l_log_price",
    ),
    feature(
        "total_stock",
        "pricing",
        "int",
        "Sum of stock declared on listings created before T (0 if none).",
        "higher",
        "declares {value:,.0f} items in stock",
        zero("l.l_stock"),
    ),
    feature(
        "mean_log_stock_per_listing",
        "pricing",
        "float",
        f"Mean of ln(1 + stock) declared per listing (bulk stock), {_LISTING_NOTE}.",
        "higher",
        "declares bulk stock per listing ({value:.1f} on a log scale)",
        "l.l_log_stock",
    ),
)

TEXT: tuple[FeatureDef, ...] = (
    feature(
        "replica_title_count",
        "text",
        "int",
        "Listings before T whose title uses replica slang (replica, 1:1, AAA, mirror "
        "quality, ...); 0 if none.",
        "higher",
        "{value:,.0f} listing titles use replica slang",
        zero("l.l_replica_title"),
    ),
    feature(
        "replica_title_share",
        "text",
        "float",
        f"Share of listing titles with replica slang, {_LISTING_NOTE}.",
        "higher",
        "{value:.0%} of listing titles use replica slang (replica, 1:1, AAA...)",
        div("l.l_replica_title", "l.l_n"),
    ),
    feature(
        "replica_image_text_share",
        "text",
        "float",
        "Share of listings with image (OCR) text whose image text uses replica slang, over "
        "listings with image text listed before T; NULL if none.",
        "higher",
        "{value:.0%} of product images carry replica slang",
        div("l.l_replica_image", "l.l_image_text"),
    ),
    feature(
        "replica_any_share",
        "text",
        "float",
        f"Share of listings with replica slang in the title or image text, {_LISTING_NOTE}.",
        "higher",
        "{value:.0%} of listings use replica slang in title or image",
        div("l.l_replica_any", "l.l_n"),
    ),
    feature(
        "image_text_share",
        "text",
        "float",
        f"Share of listings with OCR text on the product image, {_LISTING_NOTE}.",
        "none",
        "{value:.0%} of listings have text on their images",
        div("l.l_image_text", "l.l_n"),
    ),
    feature(
        "brand_stuffing_share",
        "text",
        "float",
        "Share of listings whose title names a known brand other than the listing's own "
        f"(brands known on the marketplace before T), {_LISTING_NOTE}.",
        "higher",
        "{value:.0%} of listing titles name brands the item is not",
        div(zero("lm.lm_title_listings"), "l.l_n"),
    ),
    feature(
        "other_brands_per_title",
        "text",
        "float",
        f"Mean number of other known brands named per listing title, {_LISTING_NOTE}.",
        "higher",
        "titles name {value:.1f} other brands on average",
        div(zero("lm.lm_title_mentions"), "l.l_n"),
    ),
    feature(
        "image_text_other_brand_share",
        "text",
        "float",
        "Share of listings with image text that names a known brand other than the "
        "listing's own, over listings with image text listed before T; NULL if none.",
        "higher",
        "{value:.0%} of product images show a different brand's name",
        div(zero("lm.lm_image_listings"), "l.l_image_text"),
    ),
    feature(
        "title_length_mean",
        "text",
        "float",
        f"Mean title length in characters, {_LISTING_NOTE}.",
        "none",
        "titles are {value:.0f} characters long on average",
        "l.l_title_length",
    ),
)
