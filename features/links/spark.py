"""The link graph on Spark: links derived in Spark SQL, rings as distributed components.

The same rules as ``features.links.derive`` (per resource, the first ``cap`` stores by first
use are paired from the later first use; the store one past the cap closes the resource),
written with partitioned window functions and a self-join per resource, so no step runs in
one task. Resources are grouped by their id itself, not a hash of it: the DuckDB path's
64-bit hash could in principle merge two resources, and this path is checked against it.

Connected components use the large-star / small-star algorithm (Kiveris et al., "Connected
Components in MapReduce and Beyond", SoCC 2014): DataFrame joins and aggregates only, a
number of rounds that grows with the logarithm of the graph's size. GraphFrames' jars cannot
be fetched here, and its algorithm is the same family.

pyspark is imported lazily: it is the ``spark`` extra, not a base dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.links.derive import resolve_caps

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Rounds of large-star + small-star before giving up: each round at least roughly halves
# the distance to a component's smallest vertex, so 64 is far past any real graph.
MAX_STAR_ROUNDS = 64
_FAR_FUTURE = "TIMESTAMP '9999-12-31 23:59:59'"


def login_links_spark(
    spark: SparkSession, max_stores_per: dict[str, int] | None = None
) -> DataFrame:
    """Time-stamped store-store links from the typed ``logins`` view, in Spark SQL.

    Args:
        spark: Session with the typed ``logins`` view
            (``features.store.spark_engine.open_histories_spark``).
        max_stores_per: Per-kind cap of stores per resource (``derive.DEFAULT_MAX_STORES_PER``).

    Returns:
        A lazy DataFrame with the columns of ``derive.login_links``: ``store_id``,
        ``linked_store_id``, ``kind``, ``linked_at``, ``unlinked_at`` (null: never), both
        directions, one row per (pair, kind) and validity interval.
    """
    return spark.sql(login_links_sql(resolve_caps(max_stores_per)))


def login_links_sql(caps: dict[str, int]) -> str:
    """Spark SQL of ``login_links_spark`` for resolved per-kind caps."""
    uses = " UNION ALL ".join(
        f"SELECT '{kind}' AS kind, {column} AS resource, store_id, min(logged_at) AS first_at "
        f"FROM logins WHERE {column} IS NOT NULL AND {column} <> '' AND store_id IS NOT NULL "
        f"AND logged_at IS NOT NULL GROUP BY {column}, store_id"
        for kind, column in (("device", "device_id"), ("wifi", "wifi_id"), ("ip", "ip"))
    )
    cap_case = "CASE kind " + " ".join(f"WHEN '{k}' THEN {c}" for k, c in caps.items()) + " END"
    return f"""
    WITH uses AS ({uses}),
    -- Position of each store among a resource's users by first use; the window is
    -- partitioned by resource, so it spreads over tasks.
    ranked AS (
        SELECT kind, resource, store_id, first_at, {cap_case} AS cap,
               row_number() OVER (PARTITION BY kind, resource
                                  ORDER BY first_at, store_id) AS pos,
               count(*) OVER (PARTITION BY kind, resource) AS n
        FROM uses
    ),
    shared AS (SELECT * FROM ranked WHERE n >= 2 AND pos <= cap + 1),
    -- The first use by the store one past the cap closes the resource for everyone.
    closing AS (SELECT kind, resource, first_at AS unlinked_at FROM shared WHERE pos = cap + 1),
    members AS (
        SELECT s.kind, s.resource, s.store_id, s.first_at, s.pos, c.unlinked_at
        FROM shared s LEFT JOIN closing c ON s.kind = c.kind AND s.resource = c.resource
        WHERE s.pos <= s.cap
    ),
    pairs AS (
        SELECT least(a.store_id, b.store_id) AS s1, greatest(a.store_id, b.store_id) AS s2,
               a.kind, b.first_at AS linked_at, a.unlinked_at
        FROM members a JOIN members b
          ON a.kind = b.kind AND a.resource = b.resource AND a.pos < b.pos
        WHERE a.unlinked_at IS NULL OR b.first_at < a.unlinked_at
    ),
    -- A pair's intervals (linked_at, unlinked_at] over resources of one kind, merged.
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
        SELECT p.*, CASE WHEN p.linked_at <= max(coalesce(p.unlinked_at, {_FAR_FUTURE}))
                         OVER (PARTITION BY p.s1, p.s2, p.kind
                               ORDER BY p.linked_at, p.unlinked_at
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                         THEN 0 ELSE 1 END AS starts_island
        FROM pairs p LEFT SEMI JOIN
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
    SELECT s1 AS store_id, s2 AS linked_store_id, kind, linked_at, unlinked_at FROM merged
    UNION ALL
    SELECT s2, s1, kind, linked_at, unlinked_at FROM merged
    """


def connected_components(edges: DataFrame, max_rounds: int = MAX_STAR_ROUNDS) -> DataFrame:
    """Connected components of an undirected graph: every vertex with its smallest vertex.

    Large-star (each vertex's larger neighbours attach to its smallest neighbour-or-self)
    and small-star (each vertex and its smaller neighbours attach to the smallest of them)
    alternate until a round changes nothing; then every vertex points straight at its
    component's smallest vertex.

    Args:
        edges: Columns ``src`` and ``dst`` (any comparable type; self-loops and duplicates
            are fine; both directions need not be given).
        max_rounds: Rounds allowed before failing.

    Returns:
        ``vertex`` and ``component`` (the smallest vertex of its component) for every vertex
        of an edge.

    Raises:
        RuntimeError: If the rounds do not converge within ``max_rounds``.
    """
    from pyspark.sql import functions as F

    # Checkpointed every round: the plan of an iterated DataFrame grows with each round.
    current = _undirected(edges.select("src", "dst")).localCheckpoint()
    for _ in range(max_rounds):
        after = _small_star(_large_star(current)).localCheckpoint()
        # Both are sets of distinct pairs: equal sizes and nothing new means the same set.
        changed = after.count() != current.count() or not after.exceptAll(current).isEmpty()
        current = after
        if not changed:
            break
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    # At the fixed point every edge joins a vertex to its component's smallest vertex.
    parents = current.groupBy(F.col("src").alias("vertex")).agg(F.min("dst").alias("nearest"))
    result = parents.select("vertex", F.least(F.col("vertex"), F.col("nearest")).alias("component"))
    return result


def _undirected(edges: DataFrame) -> DataFrame:
    """Both directions of every edge, self-loops included once, duplicates removed."""
    flipped = edges.select(edges["dst"].alias("src"), edges["src"].alias("dst"))
    return edges.unionByName(flipped).distinct()


def _large_star(edges: DataFrame) -> DataFrame:
    """Each vertex's strictly larger neighbours link to its smallest neighbour-or-self."""
    from pyspark.sql import functions as F

    smallest = edges.groupBy("src").agg(F.least(F.min("dst"), F.first("src")).alias("m"))
    larger = edges.where(F.col("dst") > F.col("src")).join(smallest, "src")
    attached = larger.select(F.col("dst").alias("src"), F.col("m").alias("dst"))
    return _undirected(attached.unionByName(smallest.select("src", F.col("m").alias("dst"))))


def _small_star(edges: DataFrame) -> DataFrame:
    """Each vertex and its smaller neighbours link to the smallest of them."""
    from pyspark.sql import functions as F

    smaller = edges.where(F.col("dst") <= F.col("src"))
    smallest = smaller.groupBy("src").agg(F.min("dst").alias("m"))
    attached = smaller.join(smallest, "src").select(
        F.col("dst").alias("src"), F.col("m").alias("dst")
    )
    itself = smallest.select("src", F.col("m").alias("dst"))
    return _undirected(attached.unionByName(itself))
