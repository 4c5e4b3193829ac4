"""Storefront and identity features: template, modules, verification, age, the seller's stores."""

from __future__ import annotations

from features.store.dialect import (
    Dialect,
    FeatureDef,
    Keep,
    Stage,
    aggregate_select,
    days_before_as_of,
    feature,
    zero,
)


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


STAGES: tuple[Stage, ...] = (Stage("seller", "sf", "stores", _seller_stage),)

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
