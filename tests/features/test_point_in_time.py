"""Point-in-time correctness: nothing at or after a row's as-of time reaches its features."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_feature_table, build_training_table
from features.contract.histories import open_histories
from features.links import login_links

START, MONTHS = "2023-01-01", 12
T_MID = pd.Timestamp("2023-07-01 00:00:00")
LATE = "_late"


@pytest.fixture(scope="module")
def marketplace(tmp_path_factory) -> Path:
    from features.synth.generate import generate_marketplace

    out = tmp_path_factory.mktemp("pit") / "market"
    generate_marketplace(out, 2000, seed=11, start=START, months=MONTHS)
    return out


def _read(directory: Path, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(directory / f"{table}.parquet", columns=columns)


def _late_times(times: pd.Series, start: pd.Timestamp) -> pd.Series:
    """Map times into [start, start + 20 days), keeping their order; the first is exactly start."""
    times = pd.to_datetime(times, utc=True)
    span = (times.max() - times.min()) or pd.Timedelta(seconds=1)
    offset = (times - times.min()) / span * pd.Timedelta(days=20)
    return start.tz_localize("UTC") + offset.dt.floor("s")


def _append_after(src: Path, dst: Path, start: pd.Timestamp, n_labels: int = 300) -> Path:
    """Copy ``src`` to ``dst`` and append a late copy of every event at or after ``start``.

    Late copies get new ids, point at each other (late orders at late listings, ...), link
    stores through shuffled devices, Wi-Fi and IPs, add ``n_labels`` labels and add new
    stores opened after ``start``.
    """
    shutil.copytree(src, dst)
    rng = np.random.default_rng(0)

    def write(table: str, late: pd.DataFrame) -> None:
        combined = pd.concat([_read(src, table), late], ignore_index=True)
        combined.to_parquet(dst / f"{table}.parquet", index=False)

    listings = _read(src, "listings")
    listings["listing_id"] += LATE
    listings["listed_at"] = _late_times(listings["listed_at"], start)
    write("listings", listings)

    orders = _read(src, "orders")
    orders["order_id"] += LATE
    orders["listing_id"] += LATE
    orders["ordered_at"] = _late_times(orders["ordered_at"], start)
    delivered = orders["delivered_at"].notna()
    orders["delivered_at"] = orders["delivered_at"].where(
        ~delivered, orders["ordered_at"] + pd.Timedelta(days=2)
    )
    write("orders", orders)

    reviews = _read(src, "reviews")
    reviews["review_id"] += LATE
    reviews["order_id"] = reviews["order_id"].where(
        reviews["order_id"].isna(), reviews["order_id"] + LATE
    )
    reviews["created_at"] = _late_times(reviews["created_at"], start)
    write("reviews", reviews)

    disputes = _read(src, "disputes")
    disputes["dispute_id"] += LATE
    disputes["order_id"] += LATE
    disputes["opened_at"] = _late_times(disputes["opened_at"], start)
    write("disputes", disputes)

    stores = _read(src, "stores")
    new_stores = stores.sample(20, random_state=0).copy()
    new_stores["store_id"] += LATE
    new_stores["opened_at"] = start.tz_localize("UTC") + pd.Timedelta(hours=1)
    write("stores", new_stores)

    logins = _read(src, "logins")
    logins["logged_at"] = _late_times(logins["logged_at"], start)
    shuffled = rng.choice(len(logins), size=min(500, len(logins)), replace=False)
    for column in ("ip", "device_id", "wifi_id"):  # new links between random stores
        values = logins[column].to_numpy().copy()
        values[shuffled] = rng.permutation(values[shuffled])
        logins[column] = values
    new_logins = logins.sample(20, random_state=1).copy()
    new_logins["store_id"] = new_stores["store_id"].to_numpy()
    new_logins["logged_at"] = start.tz_localize("UTC") + pd.Timedelta(hours=2)
    write("logins", pd.concat([logins, new_logins], ignore_index=True))

    labels = pd.DataFrame(
        {
            "store_id": stores["store_id"].sample(n_labels, random_state=2).to_numpy(),
            "labeled_at": start.tz_localize("UTC") + pd.Timedelta(days=1),
            "is_counterfeit": rng.integers(0, 2, n_labels),
            "source": "test_buy",
        }
    )
    write("labels", labels)
    return dst


def _end_of(directory: Path) -> pd.Timestamp:
    times = [
        _read(directory, table, [column])[column].max()
        for table, column in (
            ("listings", "listed_at"),
            ("orders", "ordered_at"),
            ("orders", "delivered_at"),
            ("reviews", "created_at"),
            ("disputes", "opened_at"),
            ("logins", "logged_at"),
            ("labels", "labeled_at"),
            ("stores", "opened_at"),
        )
    ]
    return max(times).tz_convert("UTC").tz_localize(None).ceil("D")


@pytest.mark.slow
def test_events_and_labels_after_as_of_change_nothing(marketplace, tmp_path):
    before, spec = build_feature_table(marketplace, T_MID, validate=False)
    later = _append_after(marketplace, tmp_path / "later", T_MID)
    after, spec_after = build_feature_table(later, T_MID)
    assert spec_after.hash == spec.hash
    assert len(before) > 1000
    # Sanity: the appended history really is different from T_MID on.
    assert len(_read(later, "orders")) == 2 * len(_read(marketplace, "orders"))
    pd.testing.assert_frame_equal(before, after)
    # ...and the original history already had orders after T_MID that were left out.
    ordered_at = _read(marketplace, "orders", ["ordered_at"])["ordered_at"]
    assert before["order_count"].sum() == (ordered_at < T_MID.tz_localize("UTC")).sum()


@pytest.fixture(scope="module")
def training(marketplace) -> tuple[pd.DataFrame, object]:
    return build_training_table(marketplace, validate=False)


@pytest.mark.slow
def test_training_rows_ignore_later_events_and_labels(marketplace, training, tmp_path):
    labels = _read(marketplace, "labels")
    table, spec = training
    assert len(table) == len(labels)
    expected = labels.assign(
        as_of=pd.to_datetime(labels["labeled_at"]).dt.tz_convert("UTC").dt.tz_localize(None)
    ).sort_values(["store_id", "as_of"])
    assert list(table["store_id"]) == list(expected["store_id"])
    assert (table["as_of"].to_numpy() == expected["as_of"].to_numpy()).all()
    spec.check_table(table)

    later = _append_after(marketplace, tmp_path / "later", _end_of(marketplace), n_labels=20)
    table_later, _ = build_training_table(later)
    original = table_later.merge(table[["store_id", "as_of"]], on=["store_id", "as_of"])
    pd.testing.assert_frame_equal(table, original)


def _labeled_neighbour(directory: Path, table: pd.DataFrame) -> tuple[str, str]:
    """A (store, neighbour) pair where the neighbour's label feeds the store's training row."""
    links = login_links(open_histories(directory))
    labels = _read(directory, "labels")
    labeled_at = pd.to_datetime(labels["labeled_at"]).dt.tz_convert("UTC").dt.tz_localize(None)
    rows = table[table["link_labeled_linked_stores"] > 0]
    for store, as_of in zip(rows["store_id"], rows["as_of"], strict=True):
        mine = links[(links["store_id"] == store) & (links["linked_at"] < as_of)]
        known = labels[labels["store_id"].isin(mine["linked_store_id"]) & (labeled_at < as_of)]
        if len(known):
            return store, known["store_id"].iloc[0]
    raise AssertionError("the marketplace has no linked, labeled stores")


@pytest.mark.slow
def test_a_rows_own_label_never_enters_its_features(marketplace, training, tmp_path):
    table, _ = training
    store, neighbour = _labeled_neighbour(marketplace, table)
    flipped = tmp_path / "flipped"
    shutil.copytree(marketplace, flipped)
    labels = _read(marketplace, "labels")
    mask = labels["store_id"] == neighbour
    labels.loc[mask, "is_counterfeit"] = 1 - labels.loc[mask, "is_counterfeit"]
    labels.to_parquet(flipped / "labels.parquet", index=False)
    table_flipped, _ = build_training_table(flipped, validate=False)

    def rows(frame: pd.DataFrame, store_id: str) -> pd.DataFrame:
        return frame[frame["store_id"] == store_id].reset_index(drop=True)

    # The neighbour's own rows do not move when only its own label changes...
    pd.testing.assert_frame_equal(rows(table, neighbour), rows(table_flipped, neighbour))
    # ...while the linked store's row, which may use that label, does.
    assert not rows(table, store).equals(rows(table_flipped, store))


def test_an_event_exactly_at_as_of_is_left_out(make_histories, tmp_path):
    path = make_histories(tmp_path)
    at = pd.Timestamp("2024-01-02 10:00")  # order o1 of store s1
    s1_at = build_feature_table(path, at)[0].set_index("store_id").loc["s1"]
    s1_after = build_feature_table(path, at + pd.Timedelta(microseconds=1))[0]
    s1_after = s1_after.set_index("store_id").loc["s1"]
    assert s1_at["order_count"] == 0 and s1_after["order_count"] == 1
    assert s1_at["login_count"] == 2  # 2024-01-01 and 2024-01-02 08:00 logins
    assert pd.isna(s1_at["counterfeit_dispute_rate"])


def test_link_label_counts_only_labels_known_before_the_row(make_histories, tmp_path):
    table, _ = build_training_table(make_histories(tmp_path))
    rows = table.set_index("store_id")
    # s1 (counterfeit, labeled 2024-03-01) and s2 (counterfeit, 2024-03-05) share a device.
    assert rows.loc["s1", "link_known_counterfeit"] == 0  # s2's label comes later; own never
    assert rows.loc["s2", "link_known_counterfeit"] == 1  # s1's label is known by then
