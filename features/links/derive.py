"""Derive time-stamped store-store links from the logins: shared devices, Wi-Fi and IPs."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from features.links.inputs import LinkGraphError

LINK_KINDS: tuple[str, ...] = ("device", "wifi", "ip")


# A resource used by more stores than this says nothing (NAT, cafés, shared offices).
DEFAULT_MAX_STORES_PER: dict[str, int] = {"device": 30, "wifi": 30, "ip": 20}


def login_links(
    con: duckdb.DuckDBPyConnection, max_stores_per: dict[str, int] | None = None
) -> pd.DataFrame:
    """Derive time-stamped store-store links from the typed ``logins`` view.

    Per resource (device, Wi-Fi, IP), stores are ranked by their first use. The first
    ``cap`` stores are paired; a pair is linked from the later of the two first uses. The
    first use by the store ranked ``cap + 1`` unlinks every pair of that resource from then
    on: the resource has become too popular to say anything.

    Args:
        con: DuckDB connection with the typed ``logins`` view (see
            ``features.contract.histories.open_histories``).
        max_stores_per: Per-kind cap of stores per resource; missing kinds use
            ``DEFAULT_MAX_STORES_PER`` (device 30, wifi 30, ip 20).

    Returns:
        Columns ``store_id``, ``linked_store_id``, ``kind`` (``device``/``wifi``/``ip``),
        ``linked_at``, ``unlinked_at`` (NaT: never). Both directions are present. There is
        one row per (pair, kind) and validity interval: links of one kind through several
        resources are merged into their union, so a pair is only listed twice for a kind if
        it was unlinked and later linked again (a gap that must not count).

    Raises:
        LinkGraphError: If the connection has no ``logins`` view or a cap is invalid.
    """
    caps = resolve_caps(max_stores_per)
    try:
        con.execute("SELECT store_id, logged_at, ip, device_id, wifi_id FROM logins LIMIT 0")
    except duckdb.Error as exc:
        raise LinkGraphError(
            "login_links needs the typed 'logins' view with columns store_id, logged_at, ip, "
            f"device_id, wifi_id (open the histories with open_histories first): {exc}"
        ) from exc
    return con.sql(_login_links_sql(caps)).to_arrow_table().to_pandas()


def resolve_caps(max_stores_per: dict[str, int] | None) -> dict[str, int]:
    """Merge user caps over the defaults and check them."""
    caps = dict(DEFAULT_MAX_STORES_PER)
    for kind, cap in (max_stores_per or {}).items():
        if kind not in caps:
            raise LinkGraphError(
                f"max_stores_per: unknown kind {kind!r}; expected one of {', '.join(LINK_KINDS)}"
            )
        if isinstance(cap, bool) or not isinstance(cap, int | np.integer) or cap < 2:
            raise LinkGraphError(f"max_stores_per[{kind!r}] must be an integer >= 2, got {cap!r}")
        caps[kind] = int(cap)
    return caps


def _login_links_sql(caps: dict[str, int]) -> str:
    """SQL that turns ``logins`` into merged, both-direction, time-stamped links."""
    # Resources are grouped by a 64-bit hash of their id, cheaper than the strings: among ten
    # million resources of one kind the chance that any two collide is about 3e-6.
    uses = " UNION ALL ".join(
        f"SELECT '{kind}' AS kind, hash({column}) AS resource, store_id, "
        "min(logged_at) AS first_at "
        f"FROM logins WHERE {column} IS NOT NULL AND {column} <> '' AND store_id IS NOT NULL "
        f"AND logged_at IS NOT NULL GROUP BY hash({column}), store_id"
        for kind, column in (("device", "device_id"), ("wifi", "wifi_id"), ("ip", "ip"))
    )
    cap_case = "CASE kind " + " ".join(f"WHEN '{k}' THEN {c}" for k, c in caps.items()) + " END"
    keep = max(caps.values()) + 1
    return f"""
    WITH uses AS ({uses}),
    -- Per resource used by 2+ stores, its first cap + 1 stores by first use (a top-N
    -- aggregate: far cheaper than ranking every use of every resource).
    shared AS (SELECT kind, resource FROM uses GROUP BY kind, resource HAVING count(*) >= 2),
    firsts AS (
        SELECT kind, {cap_case} AS cap,
               min_by({{'store_id': store_id, 'first_at': first_at}},
                      {{'first_at': first_at, 'store_id': store_id}}, {keep}) AS firsts
        FROM uses SEMI JOIN shared USING (kind, resource)
        GROUP BY kind, resource
    ),
    -- The first use by the store one past the cap closes the resource for everyone; only
    -- the first cap stores are paired, linked from the later of their first uses. Pairs
    -- come from list positions (i < j), so no join is needed.
    positions AS (
        SELECT kind, firsts,
               CASE WHEN len(firsts) > cap THEN firsts[cap + 1].first_at END AS unlinked_at,
               unnest(flatten(list_transform(range(1, least(len(firsts), cap) + 1),
                   lambda i: list_transform(range(i + 1, least(len(firsts), cap) + 1),
                                            lambda j: {{'i': i, 'j': j}})))) AS p
        FROM firsts
    ),
    pairs AS (
        SELECT least(firsts[p.i].store_id, firsts[p.j].store_id) AS s1,
               greatest(firsts[p.i].store_id, firsts[p.j].store_id) AS s2,
               kind, firsts[p.j].first_at AS linked_at, unlinked_at
        FROM positions
        WHERE unlinked_at IS NULL OR firsts[p.j].first_at < unlinked_at
    ),
    {merge_intervals_sql("'infinity'::TIMESTAMP", "SEMI JOIN")}
    SELECT store_id, linked_store_id, kind, linked_at, unlinked_at FROM (
        SELECT s1 AS store_id, s2 AS linked_store_id, kind, linked_at, unlinked_at FROM merged
        UNION ALL
        SELECT s2, s1, kind, linked_at, unlinked_at FROM merged
    ) ORDER BY store_id, linked_store_id, kind, linked_at
    """


def merge_intervals_sql(far_future: str, semi_join: str) -> str:
    """CTEs ``grouped`` to ``merged``: each pair's intervals of one kind merged into islands.

    Shared by the DuckDB and Spark derivations; reads a CTE ``pairs(s1, s2, kind, linked_at,
    unlinked_at)`` (unlinked_at null: open).

    Args:
        far_future: A timestamp literal later than any event (an open interval's end).
        semi_join: The dialect's semi-join keywords.
    """
    return f"""
    -- A pair's intervals (linked_at, unlinked_at] over resources of one kind, merged. With
    -- one interval, or only open ones, the merge is a plain aggregate.
    grouped AS (
        SELECT s1, s2, kind, count(*) AS n, bool_and(unlinked_at IS NULL) AS all_open,
               min(linked_at) AS linked_at,
               CASE WHEN bool_or(unlinked_at IS NULL) THEN NULL
                    ELSE max(unlinked_at) END AS unlinked_at
        FROM pairs GROUP BY s1, s2, kind
    ),
    simple AS (
        SELECT s1, s2, kind, linked_at, unlinked_at FROM grouped WHERE n = 1 OR all_open
    ),
    -- Otherwise a new island starts when an interval begins after all earlier ones ended.
    flagged AS (
        SELECT p.*, CASE WHEN p.linked_at <= max(coalesce(p.unlinked_at, {far_future}))
                         OVER (PARTITION BY p.s1, p.s2, p.kind
                               ORDER BY p.linked_at, p.unlinked_at
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                         THEN 0 ELSE 1 END AS starts_island
        FROM pairs p {semi_join}
             (SELECT s1, s2, kind FROM grouped WHERE n > 1 AND NOT all_open) g
             ON p.s1 = g.s1 AND p.s2 = g.s2 AND p.kind = g.kind
    ),
    islands AS (
        SELECT *, sum(starts_island) OVER (PARTITION BY s1, s2, kind
                                          ORDER BY linked_at, unlinked_at
                                          ROWS UNBOUNDED PRECEDING) AS island
        FROM flagged
    ),
    merged AS (
        SELECT * FROM simple
        UNION ALL
        SELECT s1, s2, kind, min(linked_at) AS linked_at,
               CASE WHEN bool_or(unlinked_at IS NULL) THEN NULL
                    ELSE max(unlinked_at) END AS unlinked_at
        FROM islands GROUP BY s1, s2, kind, island
    )
    """
