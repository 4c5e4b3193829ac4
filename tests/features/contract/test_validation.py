"""Behaviour of features.contract.validation: one test per kind of bad input, plus a valid one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features import FeaturesError
from features.contract.histories import HistoriesError, open_histories
from features.contract.validation import (
    ContractViolationError,
    Violation,
    check_histories,
    validate_histories,
)

NOW = datetime(2025, 1, 1)


def only(report, table: str, column: str | None, kind: str) -> Violation:
    """The single violation of ``kind`` on ``table.column``; fails if absent or repeated."""
    found = [v for v in report.violations if (v.table, v.column, v.kind) == (table, column, kind)]
    assert len(found) == 1, [v.message for v in report.violations]
    return found[0]


def set_cell(df: pd.DataFrame, key_col: str, key: str, col: str, value) -> pd.DataFrame:
    df = df.copy()
    if not isinstance(value, (int, float, bool)) or df[col].dtype.kind not in "ifb":
        df[col] = df[col].astype(object)
    df.loc[df[key_col] == key, col] = value
    return df


def listing(directory: Path) -> list[tuple[str, int, float]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime) for p in directory.rglob("*"))


# --- valid input ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_valid_histories_pass_with_summary(make_histories, tmp_path, fmt):
    directory = make_histories(tmp_path, fmt=fmt)
    report = check_histories(directory, now=NOW)
    assert report.ok and report.violations == ()
    summary = report.summary
    assert summary.rows == {
        "stores": 5,
        "listings": 8,
        "orders": 10,
        "reviews": 6,
        "disputes": 3,
        "logins": 8,
        "labels": 4,
    }
    assert summary.n_stores == 5 and summary.n_labeled_stores == 4
    assert summary.labels_by_class == {0: 2, 1: 2}
    assert summary.labels_by_source == {"complaint": 1, "rights_holder": 1, "test_buy": 2}
    assert summary.time_range == (datetime(2023, 1, 1), datetime(2024, 7, 1))
    assert summary.time_ranges["orders"] == (datetime(2024, 1, 2, 10), datetime(2024, 1, 11, 19))
    # What validation accepts, the typed views can cast.
    con = open_histories(directory)
    assert con.execute("SELECT sum(amount) FROM orders").fetchone()[0] == pytest.approx(1347.0)


def test_timestamps_in_any_form_are_utc_instants(make_histories, tmp_path):
    # Naive Parquet timestamps are UTC by contract; CSV text may carry an offset.
    naive = make_histories(
        tmp_path,
        name="naive",
        mutate={"orders": lambda df: df.assign(ordered_at=df["ordered_at"].dt.tz_localize(None))},
    )
    report = check_histories(naive, now=NOW)
    assert report.summary.time_ranges["orders"] == (
        datetime(2024, 1, 2, 10),
        datetime(2024, 1, 11, 19),
    )

    def offsets(df: pd.DataFrame) -> pd.DataFrame:
        df["ordered_at"] = df["ordered_at"].dt.tz_convert("Europe/Berlin").astype(str)
        return df

    berlin = make_histories(tmp_path, fmt="csv", name="berlin", mutate={"orders": offsets})
    assert "+01:00" in (berlin / "orders.csv").read_text()
    report = check_histories(berlin, now=NOW)
    assert report.summary.time_ranges["orders"] == (
        datetime(2024, 1, 2, 10),
        datetime(2024, 1, 11, 19),
    )


def test_progress_reports_each_step(make_histories, tmp_path):
    steps: list[str] = []
    validate_histories(make_histories(tmp_path), now=NOW, progress=steps.append)
    assert "orders: duplicate keys" in steps
    assert "orders.listing_id: references to listings" in steps
    assert len(steps) == 1 + 7 + 7 + 9  # open, per-table scans, keys, foreign keys


def test_default_now_is_the_current_time(make_histories, tmp_path):
    soon = datetime.now(UTC) + timedelta(days=2)
    directory = make_histories(
        tmp_path,
        mutate={"labels": lambda df: set_cell(df, "store_id", "s4", "labeled_at", soon)},
    )
    violation = only(validate_histories(directory), "labels", "labeled_at", "future_timestamp")
    assert violation.n_rows == 1


def test_validation_writes_nothing(make_histories, tmp_path):
    for fmt, mutate in [("csv", None), ("parquet", {"orders": lambda df: pd.concat([df, df])})]:
        directory = make_histories(tmp_path, fmt=fmt, mutate=mutate, name=fmt)
        before = listing(directory)
        validate_histories(directory, now=NOW)
        assert listing(directory) == before


def test_missing_directory_raises(tmp_path):
    with pytest.raises(HistoriesError, match="does not exist"):
        validate_histories(tmp_path / "nope")


# --- structure --------------------------------------------------------------------------------


def test_missing_table(make_histories, tmp_path):
    directory = make_histories(tmp_path, mutate={"disputes": lambda df: None})
    violation = only(validate_histories(directory, now=NOW), "disputes", None, "missing_table")
    assert "disputes.parquet, disputes.csv" in violation.message


def test_missing_column(make_histories, tmp_path):
    directory = make_histories(
        tmp_path, fmt="csv", mutate={"orders": lambda df: df.drop(columns=["amount"])}
    )
    report = validate_histories(directory, now=NOW)
    violation = only(report, "orders", "amount", "missing_column")
    assert violation.message == "orders.amount: column missing in orders.csv"
    # The table's other columns are still checked, and extra columns are fine.
    assert report.summary.rows["orders"] == 10


def test_unreadable_file(make_histories, tmp_path):
    directory = make_histories(tmp_path)
    (directory / "reviews.parquet").write_bytes(b"not a parquet file")
    violation = only(validate_histories(directory, now=NOW), "reviews", None, "unreadable")
    assert violation.message.startswith("reviews: cannot read reviews.parquet")


# --- types ------------------------------------------------------------------------------------


def test_wrong_type_csv(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        fmt="csv",
        mutate={"orders": lambda df: set_cell(df, "order_id", "o3", "amount", "twelve")},
    )
    violation = only(validate_histories(directory, now=NOW), "orders", "amount", "wrong_type")
    assert violation.n_rows == 1 and violation.example_keys == ("o3",)
    assert violation.message == (
        "orders.amount: 1 row must be a finite number (e.g. order_id o3='twelve')"
    )


def test_wrong_type_parquet(make_histories, tmp_path):
    def yes_no(df: pd.DataFrame) -> pd.DataFrame:
        df["is_counterfeit"] = df["is_counterfeit"].map({1: "yes", 0: "0"})
        return df

    directory = make_histories(tmp_path, mutate={"labels": yes_no})
    report = validate_histories(directory, now=NOW)
    violation = only(report, "labels", "is_counterfeit", "wrong_type")
    assert violation.n_rows == 2
    assert violation.example_keys == ("s1@2024-03-01 00:00:00", "s2@2024-03-05 00:00:00")
    assert "labels.is_counterfeit: 2 rows must be an integer" in violation.message
    # A mistyped column gets its type error only, not also "must be one of 0, 1".
    assert [v.kind for v in report.violations] == ["wrong_type"]


def test_non_integer_in_int_column(make_histories, tmp_path):
    def half_star(df: pd.DataFrame) -> pd.DataFrame:
        df["rating"] = df["rating"].astype(float)  # a float column, as some exports write it
        df.loc[df["review_id"] == "r2", "rating"] = 4.5
        return df

    directory = make_histories(tmp_path, mutate={"reviews": half_star})
    violation = only(validate_histories(directory, now=NOW), "reviews", "rating", "wrong_type")
    assert violation.example_keys == ("r2",) and "r2='4.5'" in violation.message


def test_column_of_uncastable_physical_type(make_histories, tmp_path):
    def struct_price(df: pd.DataFrame) -> pd.DataFrame:
        df["price"] = [{"value": p} for p in df["price"]]
        return df

    directory = make_histories(tmp_path, mutate={"listings": struct_price})
    violation = only(validate_histories(directory, now=NOW), "listings", "price", "wrong_type")
    assert violation.n_rows == 8 and violation.example_keys == ("l1", "l2", "l3")
    assert violation.message.startswith("listings.price: 8 rows must be a finite number")


def test_unparseable_timestamp(make_histories, tmp_path):
    def garble(df: pd.DataFrame) -> pd.DataFrame:
        df = set_cell(df, "order_id", "o2", "ordered_at", "last tuesday")
        return set_cell(df, "order_id", "o8", "ordered_at", "2024-13-45 10:00")

    directory = make_histories(tmp_path, fmt="csv", mutate={"orders": garble})
    report = validate_histories(directory, now=NOW)
    violation = only(report, "orders", "ordered_at", "unparseable_timestamp")
    assert violation.n_rows == 2 and violation.example_keys == ("o2", "o8")
    assert "orders.ordered_at: 2 rows must be a parseable timestamp" in violation.message
    assert "o2='last tuesday'" in violation.message


def test_future_timestamp(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        mutate={
            "reviews": lambda df: set_cell(
                df, "review_id", "r5", "created_at", pd.Timestamp("2025-03-01", tz="UTC")
            )
        },
    )
    report = validate_histories(directory, now=NOW)
    violation = only(report, "reviews", "created_at", "future_timestamp")
    assert violation.n_rows == 1 and violation.example_keys == ("r5",)
    assert "must not be in the future (after 2025-01-01 00:00:00 UTC)" in violation.message
    # The same data is fine once "now" has passed the timestamp; tz-aware now is accepted.
    assert validate_histories(directory, now=datetime(2025, 6, 1, tzinfo=UTC)).ok


# --- values -----------------------------------------------------------------------------------


def test_null_in_required_column(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        fmt="csv",
        mutate={"orders": lambda df: set_cell(df, "order_id", "o4", "buyer_id", None)},
    )
    violation = only(validate_histories(directory, now=NOW), "orders", "buyer_id", "null")
    assert violation.message == "orders.buyer_id: 1 row must not be null (e.g. order_id o4)"


def test_bad_enum(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        mutate={"disputes": lambda df: set_cell(df, "dispute_id", "d2", "reason", "fake")},
    )
    violation = only(validate_histories(directory, now=NOW), "disputes", "reason", "not_allowed")
    assert violation.message == (
        "disputes.reason: 1 row must be one of counterfeit, not_as_described, not_received, "
        "other (e.g. dispute_id d2='fake')"
    )


def test_label_not_0_or_1(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        fmt="csv",
        mutate={"labels": lambda df: set_cell(df, "store_id", "s3", "is_counterfeit", 2)},
    )
    violation = only(
        validate_histories(directory, now=NOW), "labels", "is_counterfeit", "not_allowed"
    )
    assert violation.n_rows == 1 and violation.example_keys == ("s3@2024-04-01 00:00:00",)
    assert "must be one of 0, 1" in violation.message


def test_rating_outside_1_to_5(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        mutate={"reviews": lambda df: set_cell(df, "review_id", "r2", "rating", 7)},
    )
    violation = only(validate_histories(directory, now=NOW), "reviews", "rating", "rule")
    assert violation.message == "reviews.rating: 1 row must be 1-5 (e.g. review_id r2='7')"


def test_negative_price(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        fmt="csv",
        mutate={"listings": lambda df: set_cell(df, "listing_id", "l3", "price", -5.0)},
    )
    violation = only(validate_histories(directory, now=NOW), "listings", "price", "rule")
    assert violation.message == "listings.price: 1 row must be > 0 (e.g. listing_id l3='-5.0')"


def test_zero_amount(make_histories, tmp_path):
    def zero(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df["order_id"].isin(["o7", "o3", "o9"]), "amount"] = 0.0
        return df

    directory = make_histories(tmp_path, mutate={"orders": zero})
    violation = only(validate_histories(directory, now=NOW), "orders", "amount", "rule")
    assert violation.n_rows == 3 and violation.example_keys == ("o3", "o7", "o9")
    assert violation.message.startswith("orders.amount: 3 rows must be > 0 (e.g. order_id o3=")


def test_delivered_before_ordered(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        mutate={
            "orders": lambda df: set_cell(
                df, "order_id", "o6", "delivered_at", pd.Timestamp("2023-12-31", tz="UTC")
            )
        },
    )
    violation = only(validate_histories(directory, now=NOW), "orders", "delivered_at", "rule")
    assert violation.example_keys == ("o6",)
    assert "1 row must not be before ordered_at" in violation.message


# --- keys -------------------------------------------------------------------------------------


def test_duplicate_key(make_histories, tmp_path):
    def duplicate(df: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([df, df[df["order_id"].isin(["o3", "o5"])]], ignore_index=True)

    directory = make_histories(tmp_path, fmt="csv", mutate={"orders": duplicate})
    violation = only(validate_histories(directory, now=NOW), "orders", "order_id", "duplicate_key")
    assert violation.n_rows == 4 and violation.example_keys == ("o3", "o5")
    assert violation.message == (
        "orders.order_id: 4 rows share 2 duplicated keys; keys must be unique "
        "(e.g. order_id o3, o5)"
    )


def test_duplicate_composite_label_key(make_histories, tmp_path):
    def relabel(df: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([df, df[df["store_id"] == "s2"]], ignore_index=True)

    directory = make_histories(tmp_path, mutate={"labels": relabel})
    violation = only(
        validate_histories(directory, now=NOW), "labels", "store_id, labeled_at", "duplicate_key"
    )
    assert violation.example_keys == ("s2@2024-03-05 00:00:00",)
    assert violation.message.startswith("labels(store_id, labeled_at): 2 rows share 1 duplicated")


def test_foreign_key_unknown_store(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        fmt="csv",
        mutate={"logins": lambda df: set_cell(df, "device_id", "dD", "store_id", "s99")},
    )
    violation = only(validate_histories(directory, now=NOW), "logins", "store_id", "foreign_key")
    assert violation.example_keys == ("s99@2024-01-01 11:00:00",)
    assert violation.message == (
        "logins.store_id: 1 row must refer to an existing stores.store_id "
        "(e.g. store_id@logged_at s99@2024-01-01 11:00:00='s99')"
    )


def test_foreign_key_unknown_listing(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        mutate={"orders": lambda df: set_cell(df, "order_id", "o6", "listing_id", "l99")},
    )
    report = validate_histories(directory, now=NOW)
    violation = only(report, "orders", "listing_id", "foreign_key")
    assert violation.message == (
        "orders.listing_id: 1 row must refer to an existing listings.listing_id "
        "(e.g. order_id o6='l99')"
    )
    assert [v.kind for v in report.violations] == ["foreign_key"]


def test_foreign_key_unknown_order(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        mutate={
            "reviews": lambda df: set_cell(df, "review_id", "r3", "order_id", "o404"),
            "disputes": lambda df: set_cell(df, "dispute_id", "d1", "order_id", "o405"),
        },
    )
    report = validate_histories(directory, now=NOW)
    review = only(report, "reviews", "order_id", "foreign_key")
    assert review.n_rows == 1 and review.example_keys == ("r3",) and "r3='o404'" in review.message
    dispute = only(report, "disputes", "order_id", "foreign_key")
    assert dispute.example_keys == ("d1",) and "existing orders.order_id" in dispute.message


def test_order_for_another_stores_listing(make_histories, tmp_path):
    # o1 is s1's order, l5 is s3's listing; r1 reviews o1 but claims store s2.
    directory = make_histories(
        tmp_path,
        mutate={
            "orders": lambda df: set_cell(df, "order_id", "o1", "listing_id", "l5"),
            "reviews": lambda df: set_cell(df, "review_id", "r1", "store_id", "s2"),
        },
    )
    report = validate_histories(directory, now=NOW)
    order = only(report, "orders", "listing_id", "inconsistent")
    assert order.message == (
        "orders.listing_id: 1 row must refer to a row of listings with the same store_id "
        "(e.g. order_id o1='l5')"
    )
    assert only(report, "reviews", "order_id", "inconsistent").example_keys == ("r1",)


# --- reporting --------------------------------------------------------------------------------


def test_check_histories_raises_with_every_violation(make_histories, tmp_path):
    directory = make_histories(
        tmp_path,
        mutate={
            "reviews": lambda df: set_cell(df, "review_id", "r2", "rating", 0),
            "listings": lambda df: set_cell(df, "listing_id", "l1", "stock", -1),
            "labels": lambda df: None,
        },
    )
    with pytest.raises(ContractViolationError) as caught:
        check_histories(directory, now=NOW)
    error = caught.value
    assert isinstance(error, FeaturesError)  # what callers catch for any bad input
    assert [(v.table, v.kind) for v in error.violations] == [
        ("listings", "rule"),
        ("reviews", "rule"),
        ("labels", "missing_table"),
    ]
    text = str(error)
    assert "3 contract violations" in text
    assert "listings.stock: 1 row must be >= 0 (e.g. listing_id l1='-1')" in text
    assert "reviews.rating: 1 row must be 1-5 (e.g. review_id r2='0')" in text
    assert "labels: table missing" in text
