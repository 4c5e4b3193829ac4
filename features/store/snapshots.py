"""The snapshot table: one row per (store, as-of time T) with the store's attributes.

Every stage joins its events to ``snapshots`` with ``event_time < as_of``; the window starts
``t30``/``t60``/``t90`` (T minus 30, 60, 90 days) are columns of it, so "recent" means the
same thing in every feature.
"""

from __future__ import annotations

# Window starts added to every snapshot row, in days before as_of.
WINDOWS_DAYS = {"t30": 30, "t60": 60, "t90": 90}
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

STORE_COLUMNS = (
    "seller_id",
    "opened_at",
    "category",
    "storefront_template",
    "storefront_modules",
    "declared_region",
    "identity_verified",
)


def snapshots_sql(keys: str, numbered: bool = False) -> str:
    """Snapshot table from a relation ``keys(store_id, as_of)``, one row per key.

    Keys of unknown stores are dropped by the join; ``snap_id`` follows (store_id, as_of)
    order (with gaps where keys were dropped) so results are deterministic.

    Args:
        keys: Relation of distinct (store_id, as_of) keys.
        numbered: ``keys`` already has ``snap_id`` in (store_id, as_of) order.
    """
    windows = ", ".join(
        f"k.as_of - INTERVAL {days} DAY AS {name}" for name, days in WINDOWS_DAYS.items()
    )
    store_columns = ", ".join(f"st.{c}" for c in STORE_COLUMNS)
    # Numbering the narrow keys before the join: a window over the joined rows sorts them all.
    numbering = (
        keys
        if numbered
        else f"(SELECT row_number() OVER (ORDER BY store_id, as_of) AS snap_id, store_id, as_of "
        f"FROM {keys})"
    )
    return f"""
SELECT k.snap_id, k.store_id, k.as_of, {windows}, {store_columns}
FROM {numbering} k
JOIN stores st ON st.store_id = k.store_id"""
