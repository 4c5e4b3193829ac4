"""Shared fixtures: a small, hand-made, VALID histories directory.

Use the ``make_histories`` fixture; it returns a factory::

    def test_something(make_histories, tmp_path):
        path = make_histories(tmp_path)                    # Parquet, all tables valid
        path = make_histories(tmp_path, fmt="csv")         # the same data as CSV files
        path = make_histories(tmp_path, mutate={"orders": break_amounts})  # one table changed

``mutate`` maps a table name to a function that takes a copy of that table's DataFrame and
returns the DataFrame to write, or None to leave the table out. ``valid_tables()`` gives the
DataFrames themselves.

The data: 5 stores (s1..s5), 8 listings, 10 orders, 6 reviews, 3 disputes, 8 logins and
4 labels, all between 2023-01-01 and 2024-07-01 UTC. Every order's listing belongs to the
order's store; every review and dispute of an order belongs to that order's store; stores
s1 and s2 share a device and a Wi-Fi network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

Mutation = Callable[[pd.DataFrame], pd.DataFrame | None]


def _ts(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True))


def valid_tables() -> dict[str, pd.DataFrame]:
    """Fresh DataFrames of every contract table; together they satisfy the contract."""
    stores = pd.DataFrame(
        {
            "store_id": ["s1", "s2", "s3", "s4", "s5"],
            "seller_id": ["u1", "u2", "u3", "u4", "u5"],
            "opened_at": _ts(
                ["2023-01-01", "2023-01-15", "2023-02-01", "2023-03-01", "2023-03-10"]
            ),
            "category": ["bags", "bags", "shoes", "watches", "shoes"],
            "storefront_template": ["basic", "basic", "custom", "custom", "basic"],
            "storefront_modules": [0, 1, 6, 4, 2],
            "declared_region": ["DE", "DE", "FR", "IT", "FR"],
            "identity_verified": [False, False, True, True, True],
        }
    )
    listings = pd.DataFrame(
        {
            "listing_id": [f"l{i}" for i in range(1, 9)],
            "store_id": ["s1", "s1", "s2", "s3", "s3", "s4", "s5", "s5"],
            "listed_at": _ts(
                [
                    "2023-02-01 10:00",
                    "2023-02-02 11:00",
                    "2023-02-03 12:00",
                    "2023-03-01 09:00",
                    "2023-03-02 09:30",
                    "2023-04-01 08:00",
                    "2023-04-02 14:00",
                    "2023-04-03 15:00",
                ]
            ),
            "brand": ["Lux", "Lux", "Lux", None, "Run", "Tick", "Run", None],
            "title": [
                "Lux bag AAA replica",
                "Lux wallet 1:1",
                "Lux bag mirror quality",
                "canvas shoes",
                "Run trainers",
                "Tick watch",
                "Run trainers kids",
                "shoe laces",
            ],
            "price": [45.0, 20.0, 50.0, 30.0, 120.0, 900.0, 80.0, 3.5],
            "reference_price": [1200.0, 400.0, 1200.0, None, 130.0, 950.0, 85.0, None],
            "stock": [500, 300, 800, 20, 15, 3, 12, 100],
            "image_text": ["LUX", None, "LUX PARIS", None, None, "TICK", None, None],
        }
    )
    order_listing = ["l1", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l3"]
    listing_store = dict(zip(listings["listing_id"], listings["store_id"], strict=True))
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(1, 11)],
            "store_id": [listing_store[x] for x in order_listing],
            "listing_id": order_listing,
            "buyer_id": ["b1", "b2", "b1", "b3", "b4", "b5", "b6", "b4", "b7", "b8"],
            "ordered_at": _ts(
                [
                    "2024-01-02 10:00",
                    "2024-01-03 11:00",
                    "2024-01-04 12:00",
                    "2024-01-05 13:00",
                    "2024-01-06 14:00",
                    "2024-01-07 15:00",
                    "2024-01-08 16:00",
                    "2024-01-09 17:00",
                    "2024-01-10 18:00",
                    "2024-01-11 19:00",
                ]
            ),
            "amount": [45.0, 45.0, 20.0, 50.0, 30.0, 120.0, 900.0, 80.0, 7.0, 50.0],
            "ship_from_region": ["CN", "CN", "CN", "CN", "FR", "FR", "IT", "FR", "FR", "CN"],
            "delivered_at": _ts(
                [
                    "2024-01-12",
                    "2024-01-13",
                    None,
                    "2024-01-15",
                    "2024-01-08",
                    "2024-01-09",
                    "2024-01-10",
                    "2024-01-11",
                    "2024-01-12",
                    None,
                ]
            ),
            "returned": [True, False, False, True, False, False, False, False, False, False],
        }
    )
    order_store = dict(zip(orders["order_id"], orders["store_id"], strict=True))
    review_order = ["o1", "o2", "o4", "o5", "o7", None]
    reviews = pd.DataFrame(
        {
            "review_id": [f"r{i}" for i in range(1, 7)],
            "store_id": [order_store[o] if o else "s5" for o in review_order],
            "order_id": review_order,
            "buyer_id": ["b1", "b2", "b3", "b4", "b6", "b9"],
            "created_at": _ts(
                [
                    "2024-01-20",
                    "2024-01-21",
                    "2024-01-22",
                    "2024-01-23",
                    "2024-01-24",
                    "2024-01-25",
                ]
            ),
            "rating": [1, 5, 2, 4, 5, 3],
            "text": ["fake!", "great", "not genuine", "ok", "perfect", "nice shop"],
        }
    )
    dispute_order = ["o1", "o4", "o3"]
    disputes = pd.DataFrame(
        {
            "dispute_id": ["d1", "d2", "d3"],
            "store_id": [order_store[o] for o in dispute_order],
            "order_id": dispute_order,
            "opened_at": _ts(["2024-01-21", "2024-01-22", "2024-02-01"]),
            "reason": ["counterfeit", "counterfeit", "not_received"],
        }
    )
    logins = pd.DataFrame(
        {
            "store_id": ["s1", "s1", "s2", "s2", "s3", "s4", "s5", "s5"],
            "logged_at": _ts(
                [
                    "2024-01-01 08:00",
                    "2024-01-02 08:00",
                    "2024-01-01 09:00",
                    "2024-01-03 09:00",
                    "2024-01-01 10:00",
                    "2024-01-01 11:00",
                    "2024-01-01 12:00",
                    "2024-01-04 12:00",
                ]
            ),
            "ip": [
                "1.1.1.1",
                "1.1.1.1",
                "1.1.1.1",
                "2.2.2.2",
                "3.3.3.3",
                "4.4.4.4",
                "5.5.5.5",
                "5.5.5.6",
            ],
            "device_id": ["dA", "dA", "dA", "dB", "dC", "dD", "dE", "dE"],
            "wifi_id": ["w1", "w1", "w1", None, "w3", None, "w5", "w5"],
        }
    )
    labels = pd.DataFrame(
        {
            "store_id": ["s1", "s2", "s3", "s4"],
            "labeled_at": _ts(["2024-03-01", "2024-03-05", "2024-04-01", "2024-07-01"]),
            "is_counterfeit": [1, 1, 0, 0],
            "source": ["test_buy", "rights_holder", "test_buy", "complaint"],
        }
    )
    return {
        "stores": stores,
        "listings": listings,
        "orders": orders,
        "reviews": reviews,
        "disputes": disputes,
        "logins": logins,
        "labels": labels,
    }


def write_histories(
    directory: Path,
    tables: dict[str, pd.DataFrame],
    fmt: str = "parquet",
) -> Path:
    """Write ``tables`` into ``directory`` as ``NAME.parquet`` or ``NAME.csv`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "parquet":
            df.to_parquet(directory / f"{name}.parquet", index=False)
        elif fmt == "csv":
            df.to_csv(directory / f"{name}.csv", index=False)
        else:
            raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    return directory


@pytest.fixture
def make_histories() -> Callable[..., Path]:
    """Factory writing the valid histories (optionally mutated); see the module docstring."""

    def make(
        base: Path,
        fmt: str = "parquet",
        mutate: dict[str, Mutation] | None = None,
        name: str = "histories",
    ) -> Path:
        tables = valid_tables()
        for table, fn in (mutate or {}).items():
            changed = fn(tables[table].copy())
            if changed is None:
                del tables[table]
            else:
                tables[table] = changed
        return write_histories(Path(base) / name, tables, fmt)

    return make
