"""Dispute and return features: counterfeit complaints and how recent they are."""

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


STAGES: tuple[Stage, ...] = (Stage("disputes", "d", "disputes", _disputes_stage),)

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
