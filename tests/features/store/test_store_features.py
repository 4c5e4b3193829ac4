"""Store feature values on the small hand-made histories (see conftest.py), checked by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from features.build import build_feature_table, default_as_of, feature_spec
from features.contract.histories import open_histories
from features.settings import duckdb_connection
from features.spec import FEATURE_GROUPS, FeatureSpec
from features.store.dialect import SPARK
from features.store.pipeline import base_feature_spec, render_sql
from features.store.vocabulary import (
    FAKE_REVIEW_TERMS,
    REPLICA_TERMS,
    prefilter_terms,
    terms_pattern,
)


def _load_fixture_module():
    # tests/features/conftest.py builds the tables; load it by path (folders are no packages).
    spec = importlib.util.spec_from_file_location(
        "features_histories_fixture", Path(__file__).parents[1] / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


histories_fixture = _load_fixture_module()

T1 = "2024-02-01"  # after every fixture event
T2 = "2024-04-01"


def _ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value, tz="UTC")


def _row(table: pd.DataFrame, store: str) -> pd.Series:
    rows = table[table["store_id"] == store]
    assert len(rows) == 1, f"expected one row for {store}, got {len(rows)}"
    return rows.iloc[0]


def _more_listings(listings: pd.DataFrame) -> pd.DataFrame:
    extra = pd.DataFrame(
        {
            "listing_id": ["l9", "l10", "l11", "l12", "l13", "l14"],
            "store_id": ["s3", "s3", "s3", "s4", "s5", "s4"],
            "listed_at": [
                _ts("2023-03-03"),
                _ts("2023-03-04"),
                _ts("2023-03-05"),
                _ts("2023-04-05"),
                _ts("2024-03-01"),  # after T1: brand "Zed" is unknown before then
                _ts("2023-04-06"),
            ],
            "brand": [None, "Run", None, "Tick", "Zed", "Tick"],
            "title": [
                "Desk copy holder",
                "Run trainers like Lux",
                "poem book",
                "Tick watch Zed style",
                "Zed bag",
                "Tick AAA+ watch",
            ],
            "price": [10.0, 50.0, 8.0, 100.0, 10.0, 60.0],
            "reference_price": [None, 130.0, None, 950.0, 100.0, 950.0],
            "stock": [5, 5, 5, 1, 1, 1],
            "image_text": [None, "LUX", None, None, None, None],
        }
    )
    return pd.concat([listings, extra], ignore_index=True)


def _empty_store(stores: pd.DataFrame) -> pd.DataFrame:
    extra = stores.iloc[[0]].copy()
    extra["store_id"] = "s6"
    extra["seller_id"] = "u1"  # the seller of s1
    extra["opened_at"] = _ts("2023-05-01")
    return pd.concat([stores, extra], ignore_index=True)


@pytest.fixture(scope="module")
def base_table(tmp_path_factory) -> tuple[pd.DataFrame, FeatureSpec]:
    path = histories_fixture.write_histories(
        tmp_path_factory.mktemp("base") / "h", histories_fixture.valid_tables()
    )
    return build_feature_table(path)


def test_default_as_of_is_just_after_the_last_event(base_table):
    table, _ = base_table
    # The latest fixture event is dispute d3 at 2024-02-01 00:00.
    assert (table["as_of"] == pd.Timestamp("2024-02-01 00:00:00.000001")).all()
    assert list(table["store_id"]) == ["s1", "s2", "s3", "s4", "s5"]


def test_pricing_values(base_table):
    table, _ = base_table
    s1 = _row(table, "s1")  # Lux 45/1200 and 20/400
    assert s1["price_to_reference_median"] == pytest.approx((0.0375 + 0.05) / 2)
    assert s1["price_to_reference_min"] == pytest.approx(0.0375)
    assert s1["price_to_reference_p10"] == pytest.approx(0.0375 + 0.1 * 0.0125)
    assert s1["share_listings_below_half_reference"] == 1.0
    assert s1["total_stock"] == 800
    assert s1["brand_count"] == 1
    s3 = _row(table, "s3")  # one unbranded listing, one Run at 120/130
    assert s3["price_to_reference_median"] == pytest.approx(120 / 130)
    assert s3["share_listings_below_half_reference"] == 0.0
    assert s3["share_branded_listings"] == 0.5


def test_order_dispute_and_logistics_values(base_table):
    table, _ = base_table
    s1 = _row(table, "s1")  # orders o1 (b1), o2 (b2), o3 (b1), all shipped from CN, DE declared
    assert s1["order_count"] == 3
    assert s1["gmv"] == pytest.approx(110.0)
    assert s1["distinct_buyers_90d"] == 2
    assert s1["repeat_buyer_share_90d"] == 0.5
    assert s1["top_buyer_order_share_90d"] == pytest.approx(2 / 3)
    assert s1["counterfeit_dispute_rate"] == pytest.approx(1 / 3)  # d1 counterfeit
    assert s1["dispute_rate"] == pytest.approx(2 / 3)  # d1, d3
    assert s1["days_since_last_counterfeit_dispute"] == pytest.approx(11.0)
    assert s1["ship_from_mismatch_share"] == 1.0
    assert s1["return_rate"] == 0.5  # o1 returned of delivered o1, o2
    # o1: 01-02 10:00 -> 01-12, o2: 01-03 11:00 -> 01-13
    assert s1["delivery_days_mean"] == pytest.approx((9 + 14 / 24 + 9 + 13 / 24) / 2)
    s2 = _row(table, "s2")  # orders o4, o10; d2 counterfeit on o4
    assert s2["counterfeit_dispute_rate"] == 0.5
    assert _row(table, "s3")["ship_from_mismatch_share"] == 0.0


def test_buyer_statistics_cover_only_the_last_90_days(make_histories, tmp_path):
    # s1: o1 (b1, 01-02 10:00), o2 (b2, 01-03 11:00), o3 (b1, 01-04 12:00). As of 04-02
    # 12:00 the window starts 01-03 12:00, so only o3 is in it: b1's first order is not.
    table, _ = build_feature_table(make_histories(tmp_path), "2024-04-02 12:00")
    s1 = _row(table, "s1")
    assert s1["order_count"] == 3
    assert s1["distinct_buyers_90d"] == 1
    assert s1["repeat_buyer_share_90d"] == 0.0
    assert s1["top_buyer_order_share_90d"] == 1.0


def _recent_repeated_reviews(reviews: pd.DataFrame) -> pd.DataFrame:
    # s1 gets two "great" reviews in March, by b1 (again) and b7.
    extra = pd.DataFrame(
        {
            "review_id": ["r7", "r8"],
            "store_id": ["s1", "s1"],
            "order_id": [None, None],
            "buyer_id": ["b1", "b7"],
            "created_at": [_ts("2024-03-01"), _ts("2024-03-02")],
            "rating": [5, 5],
            "text": ["great", "great"],
        }
    )
    return pd.concat([reviews, extra], ignore_index=True)


def test_review_repeats_cover_only_the_last_90_days(make_histories, tmp_path):
    # s1's own reviews: r1 (b1, 01-20, "fake!"), r2 (b2, 01-21, "great"), then r7 and r8.
    path = make_histories(tmp_path, mutate={"reviews": _recent_repeated_reviews})
    early = _row(build_feature_table(path, T1)[0], "s1")  # window from 2023-11-03: r1, r2
    assert early["duplicate_review_text_share_90d"] == 0.0
    assert early["reviews_per_reviewer_90d"] == 1.0
    # As of 04-25 12:00 the window starts 01-26 12:00: only r7 and r8, one text, two buyers.
    late = _row(build_feature_table(path, "2024-04-25 12:00")[0], "s1")
    assert late["review_count"] == 4
    assert late["duplicate_review_text_share_90d"] == 0.5
    assert late["reviews_per_reviewer_90d"] == 1.0
    # Without reviews in the window the ratios are missing, not zero.
    gone = _row(build_feature_table(path, "2024-07-01")[0], "s1")
    assert pd.isna(gone["duplicate_review_text_share_90d"])
    assert pd.isna(gone["reviews_per_reviewer_90d"])


def test_review_login_and_text_values(base_table):
    table, _ = base_table
    s1 = _row(table, "s1")  # reviews "fake!" (1 star) and "great" (5 stars)
    assert s1["mean_rating"] == 3.0
    assert s1["fake_mention_review_share"] == 0.5
    assert s1["share_short_5_star"] == 0.5
    assert s1["reviews_per_order"] == pytest.approx(2 / 3)
    assert s1["replica_title_count"] == 2  # "AAA replica", "1:1"
    assert s1["replica_title_share"] == 1.0
    assert s1["image_text_share"] == 0.5
    assert s1["distinct_ips"] == 1
    assert s1["login_count"] == 2
    assert s1["link_linked_stores"] == 1  # shares device dA and Wi-Fi w1 with s2
    assert _row(table, "s2")["replica_title_count"] == 1  # "mirror quality"
    assert _row(table, "s4")["share_logins_without_wifi"] == 1.0
    assert _row(table, "s5")["share_reviews_without_order"] == 1.0
    assert _row(table, "s3")["replica_title_count"] == 0


def test_listing_text_terms_and_brand_stuffing(make_histories, tmp_path):
    path = make_histories(tmp_path, mutate={"listings": _more_listings})
    early, _ = build_feature_table(path, T1)
    late, _ = build_feature_table(path, T2)
    s3 = _row(early, "s3")  # l4, l5, l9 "copy holder", l10 names Lux, l11 "poem"
    assert s3["replica_title_count"] == 0  # harmless "copy holder", no "oem" inside "poem"
    assert s3["brand_stuffing_share"] == pytest.approx(1 / 5)
    assert s3["image_text_other_brand_share"] == 1.0  # l10's image says LUX, brand Run
    s4_early, s4_late = _row(early, "s4"), _row(late, "s4")
    assert s4_early["replica_title_count"] == 1  # "AAA+"
    # "Zed" becomes a known brand only when l13 is listed (2024-03-01), between T1 and T2.
    assert s4_early["brand_stuffing_share"] == 0.0
    assert s4_late["brand_stuffing_share"] == pytest.approx(1 / 3)


def test_store_without_events_gets_zero_counts_and_missing_ratios(make_histories, tmp_path):
    path = make_histories(tmp_path, mutate={"stores": _empty_store})
    table, spec = build_feature_table(path, T1)
    s6 = _row(table, "s6")
    for name in ("listing_count", "order_count", "review_count", "dispute_count", "login_count"):
        assert s6[name] == 0
    for name in ("price_to_reference_median", "counterfeit_dispute_rate", "mean_rating"):
        assert pd.isna(s6[name])
    assert s6["seller_other_stores"] == 1  # s1 has the same seller
    assert s6["store_age_days"] == pytest.approx(
        (pd.Timestamp(T1) - pd.Timestamp("2023-05-01")).days
    )
    # Every int and bool feature is defined for every row.
    for feat in spec:
        if feat.dtype in ("int", "bool"):
            assert table[feat.name].notna().all(), feat.name


def test_stores_opened_after_as_of_get_no_row(make_histories, tmp_path):
    table, _ = build_feature_table(make_histories(tmp_path), "2023-03-05")
    assert list(table["store_id"]) == ["s1", "s2", "s3", "s4"]  # s5 opens 2023-03-10


def test_table_matches_spec_with_at_least_80_features(base_table):
    table, spec = base_table
    assert len(spec) >= 80
    spec.check_table(table)
    assert list(table.columns) == ["store_id", "as_of", *spec.names]
    groups = spec.groups()
    for group in FEATURE_GROUPS:
        if group != "custom":
            assert len(groups.get(group, [])) >= 3, group
    assert spec.categorical == ["category"]
    dtypes = {"float": "float64", "int": "int64", "bool": "bool"}
    for feat in spec:
        column = table[feat.name]
        if feat.dtype == "category":
            assert pd.api.types.is_string_dtype(column)
        else:
            assert str(column.dtype) == dtypes[feat.dtype], feat.name
    assert all(f.description and f.reason_template for f in spec)


def test_spec_hash_is_stable_and_round_trips(base_table):
    _, spec = base_table
    assert feature_spec().hash == spec.hash == feature_spec().hash
    again = FeatureSpec.from_json(spec.to_json())
    assert again == spec and again.hash == spec.hash
    assert json.loads(spec.to_json())["features"][0]["name"] == spec.names[0]
    assert spec.names[: len(base_feature_spec())] == base_feature_spec().names


def test_spark_rendering_uses_no_duckdb_only_functions():
    statements = render_sql(SPARK, brands=["lux", "run"])
    text = "\n".join(statements.values())
    for duckdb_only in ("quantile_cont(", "epoch(", "unnest(", "regexp_matches(", "hash("):
        assert duckdb_only not in text.replace("xxhash64(", ""), duckdb_only
    assert "percentile(" in text and "explode(" in text
    assert statements["features"].count("LEFT JOIN") == len(statements) - 4


def test_prefilter_terms_cover_every_term():
    for terms in (REPLICA_TERMS, FAKE_REVIEW_TERMS):
        kept = prefilter_terms(terms)
        assert all(any(k in t for k in kept) for t in terms)
    assert "high copy" not in prefilter_terms(REPLICA_TERMS)  # "copy" already covers it
    assert terms_pattern(["aaa+", "aaa"]).startswith(r"(\baaa\+|")


def _in_zone(tables: dict[str, pd.DataFrame], zone: str | None) -> dict[str, pd.DataFrame]:
    """The tables with every timestamp column in ``zone`` (None: naive UTC)."""
    out = {}
    for name, frame in tables.items():
        frame = frame.copy()
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
                utc = frame[column].dt.tz_convert("UTC")
                naive = utc.dt.tz_localize(None)
                frame[column] = naive if zone is None else utc.dt.tz_convert(zone)
        out[name] = frame
    return out


@pytest.mark.parametrize(
    ("fmt", "zone"),
    [("parquet", "Asia/Shanghai"), ("parquet", None), ("csv", "America/New_York"), ("csv", None)],
)
def test_default_as_of_is_the_same_from_any_timestamp_representation(tmp_path, fmt, zone):
    # The latest time comes from raw Parquet statistics where it can; it must equal the max
    # over the typed views whatever the files' time zones or format.
    tables = _in_zone(histories_fixture.valid_tables(), zone)
    # Make the latest instant an order's delivery, so every column kind is in play.
    orders = tables["orders"]
    orders.loc[orders.index[0], "delivered_at"] = orders["delivered_at"].max() + pd.Timedelta(
        days=400
    )
    path = histories_fixture.write_histories(tmp_path / "h", tables, fmt)
    con = open_histories(path, duckdb_connection())
    latest = con.execute("SELECT max(delivered_at) FROM orders").fetchall()[0][0]
    assert default_as_of(con) == pd.Timestamp(latest) + pd.Timedelta(microseconds=1)
    assert default_as_of(con) > pd.Timestamp("2025-01-01")


def test_expected_rows_are_distinct_and_sorted_like_the_feature_table():
    from features.build import _expected_rows

    t1, t2 = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")
    keys = pd.DataFrame(
        {
            "store_id": pd.Series(["s2", "s1", "s2", "s1", "s10"], dtype="str"),
            "as_of": [t1, t2, t1, t1, t2],
        }
    )
    rows = _expected_rows(keys)
    assert list(zip(rows["store_id"], rows["as_of"], strict=True)) == [
        ("s1", t1),
        ("s1", t2),
        ("s10", t2),
        ("s2", t1),
    ]
    assert _expected_rows(rows).equals(rows)  # already sorted and distinct: kept as is


def test_store_features_do_not_depend_on_the_keys_order_or_unknown_stores(tmp_path):
    from features.store.engine import compute_store_features

    path = histories_fixture.write_histories(tmp_path / "h", histories_fixture.valid_tables())
    con = open_histories(path, duckdb_connection())
    t1, t2 = pd.Timestamp(T1), pd.Timestamp(T2)
    ids = ["s1", "s2", "s3", "s4", "s5"]
    ordered = pd.DataFrame(
        {
            "store_id": pd.Series([i for i in ids for _ in (t1, t2)], dtype="str"),
            "as_of": [t for _ in ids for t in (t1, t2)],
        }
    )
    fast = compute_store_features(con, ordered)  # sorted, distinct: numbered in pandas
    shuffled = pd.concat([ordered.iloc[::-1], ordered.iloc[:3]], ignore_index=True)
    assert compute_store_features(con, shuffled).equals(fast)
    unknown = pd.DataFrame({"store_id": pd.Series(["s0"], dtype="str"), "as_of": [t1]})
    with_unknown = pd.concat([unknown, ordered], ignore_index=True)  # still sorted
    assert compute_store_features(con, with_unknown).equals(fast)
    as_objects = ordered.astype({"store_id": object})
    assert compute_store_features(con, as_objects).equals(fast)
    assert list(fast["store_id"]) == [i for i in ids for _ in (t1, t2)]
    assert fast["order_count"].sum() > 0
