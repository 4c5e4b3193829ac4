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

from features.links.derive import LINK_KINDS, merge_intervals_sql, resolve_caps
from features.links.rings import DEFAULT_MAX_RING_SIZE
from features.links.spec import LINK_PREFIX
from features.spec import AS_OF, KEY

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
    {merge_intervals_sql(_FAR_FUTURE, "LEFT SEMI JOIN")}
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


# Distinct as-of times up to which rings are whole-graph components per time; past it, a
# search from every row (a training table has a time per label).
MAX_COMPONENT_TIMES = 4


def link_features_spark(
    rows: DataFrame,
    links: DataFrame,
    labels: DataFrame,
    neighbour_columns: tuple[str, ...],
    *,
    kinds: tuple[str, ...] = LINK_KINDS,
    max_ring_size: int = DEFAULT_MAX_RING_SIZE,
    prefix: str = LINK_PREFIX,
) -> DataFrame:
    """The link-graph features of ``features.links.add_link_features``, as Spark joins.

    The same point-in-time rules: a link counts for a row (store, T) if ``linked_at < T``
    and (``unlinked_at`` is null or ``>= T``), a label if ``labeled_at < T`` (a store's
    latest; on equal times a counterfeit label wins); the row's own label never counts.

    Args:
        rows: ``store_id``, ``as_of`` and the neighbour columns, one row per key (the
            requested rows and their linked stores' rows at the same time).
        links: ``login_links_spark`` output (both directions).
        labels: ``store_id``, ``labeled_at``, ``is_counterfeit``.
        neighbour_columns: Columns of ``rows`` whose mean and max over linked stores are added.
        kinds: Link kinds with their own columns.
        max_ring_size: Ring size cap (larger rings: the cap and a missing ring count).
        prefix: Column prefix.

    Returns:
        ``rows`` with the link columns appended in the order of ``link_spec``.
    """
    from pyspark.sql import functions as F

    from features.links.spec import LinkOptions, link_spec

    keys = rows.select(KEY, AS_OF)
    valid = valid_links(keys, links)
    pairs = valid.groupBy(KEY, AS_OF, "nb").agg(
        F.min("linked_at").alias("first_at"),
        *(F.max(F.when(F.col("kind") == k, 1).otherwise(0)).alias(f"via_{k}") for k in kinds),
    )
    pairs = _with_latest_label(pairs, "nb", labels, "label")
    counterfeit = F.col("label") == 1
    recent = F.col("first_at") >= F.col(AS_OF) - F.expr("INTERVAL 30 DAYS")
    counts = pairs.groupBy(KEY, AS_OF).agg(
        F.count("*").alias(f"{prefix}linked_stores"),
        *(F.sum(f"via_{k}").alias(f"{prefix}{k}_stores") for k in kinds),
        F.sum(recent.cast("long")).alias(f"{prefix}new_linked_stores_30d"),
        F.sum(counterfeit.cast("long")).alias(f"{prefix}known_counterfeit"),
        F.sum((F.col("label") == 0).cast("long")).alias(f"{prefix}known_genuine"),
        *(
            F.sum((counterfeit & (F.col(f"via_{k}") == 1)).cast("long")).alias(
                f"{prefix}{k}_known_counterfeit"
            )
            for k in kinds
        ),
    )
    aggregates = _neighbour_aggregates(rows, pairs, neighbour_columns, prefix)
    ring = _rings(keys, links, labels, max_ring_size, prefix)
    options = LinkOptions(prefix, tuple(kinds), True, True, tuple(neighbour_columns),
                          max_ring_size)  # fmt: skip
    names = link_spec(options, None).names
    known, genuine = f"{prefix}known_counterfeit", f"{prefix}known_genuine"
    joined = rows.join(counts, [KEY, AS_OF], "left")
    if aggregates is not None:
        joined = joined.join(aggregates, [KEY, AS_OF], "left")
    joined = joined.join(ring, [KEY, AS_OF], "left")
    count_columns = [c for c in counts.columns if c not in (KEY, AS_OF)]
    joined = joined.fillna(0, subset=count_columns)
    labelled = F.col(known) + F.col(genuine)
    joined = joined.withColumn(f"{prefix}labeled_linked_stores", labelled).withColumn(
        f"{prefix}known_counterfeit_share",
        F.when(labelled > 0, F.col(known) / labelled).cast("double"),
    )
    casts = {n: "double" if "nb_" in n or "share" in n or "ring_known" in n else "long"
             for n in names}  # fmt: skip
    return joined.select(*rows.columns, *(F.col(n).cast(casts[n]).alias(n) for n in names))


def _neighbour_aggregates(
    rows: DataFrame, pairs: DataFrame, columns: tuple[str, ...], prefix: str
) -> DataFrame | None:
    """Mean and max of ``columns`` over each row's linked stores' rows at the same time."""
    from pyspark.sql import functions as F

    if not columns:
        return None
    neighbours = rows.select(
        F.col(KEY).alias("nb"), AS_OF, *(F.col(c).alias(f"nb__{c}") for c in columns)
    )
    return (
        pairs.join(neighbours, ["nb", AS_OF])
        .groupBy(KEY, AS_OF)
        .agg(
            *(
                agg(f"nb__{c}").cast("double").alias(f"{prefix}nb_{name}_{c}")
                for c in columns
                for name, agg in (("mean", F.avg), ("max", F.max))
            )
        )
    )


def valid_links(keys: DataFrame, links: DataFrame) -> DataFrame:
    """(store_id, as_of, nb, kind, linked_at) for every link valid at the row's as-of time."""
    from pyspark.sql import functions as F

    link = links.select(
        F.col(KEY).alias("l_store"), F.col("linked_store_id").alias("nb"), "kind",
        "linked_at", "unlinked_at",
    )  # fmt: skip
    valid = (
        (F.col("l_store") == F.col(KEY))
        & (F.col("linked_at") < F.col(AS_OF))
        & (F.col("unlinked_at").isNull() | (F.col("unlinked_at") >= F.col(AS_OF)))
    )
    joined = keys.join(link, valid).where(F.col("nb") != F.col(KEY))
    return joined.select(KEY, AS_OF, "nb", "kind", "linked_at")


def _with_latest_label(frame: DataFrame, store: str, labels: DataFrame, name: str) -> DataFrame:
    """``frame`` with the latest label of ``store`` before its ``as_of`` (null: none)."""
    from pyspark.sql import functions as F

    label = labels.select(
        F.col(KEY).alias("lab_store"), "labeled_at", F.col("is_counterfeit").cast("long")
    )
    before = (F.col("lab_store") == F.col(store)) & (F.col("labeled_at") < F.col(AS_OF))
    keys = [c for c in frame.columns]
    latest = (
        frame.join(label, before)
        .groupBy(*keys)
        .agg(
            # The latest label; on equal times a counterfeit one (the larger value) wins.
            F.max_by("is_counterfeit", F.struct("labeled_at", "is_counterfeit")).alias(name)
        )
    )
    return frame.join(latest, keys, "left")


def _rings(
    keys: DataFrame, links: DataFrame, labels: DataFrame, cap: int, prefix: str
) -> DataFrame:
    """Ring size (capped) and known-counterfeit stores in the ring, per row at its time."""
    from pyspark.sql import functions as F

    times = [row[0] for row in keys.select(AS_OF).distinct().collect()]
    if len(times) <= MAX_COMPONENT_TIMES:
        reached = _reached_by_components(keys, links, times)
    else:
        reached = _reached_by_search(keys, links, cap)
    size = reached.groupBy(KEY, AS_OF).agg(F.count("*").alias("size"))
    labelled = _with_latest_label(reached, "node", labels, "label")
    own = F.col("node") == F.col(KEY)
    found = labelled.groupBy(KEY, AS_OF).agg(
        F.sum(((F.col("label") == 1) & ~own).cast("long")).alias("counterfeit")
    )
    ring = size.join(found, [KEY, AS_OF])
    return ring.select(
        KEY, AS_OF,
        F.least(F.col("size"), F.lit(cap)).alias(f"{prefix}ring_size"),
        F.when(F.col("size") <= cap, F.col("counterfeit").cast("double"))
        .alias(f"{prefix}ring_known_counterfeit"),
    )  # fmt: skip


def _reached_by_components(keys: DataFrame, links: DataFrame, times: list) -> DataFrame:
    """(store_id, as_of, node): every store in the row's component, one component pass per time."""
    from pyspark.sql import functions as F

    parts = []
    for when in times:
        at = F.lit(when).cast("timestamp")
        valid = links.where(
            (F.col("linked_at") < at)
            & (F.col("unlinked_at").isNull() | (F.col("unlinked_at") >= at))
        )
        components = connected_components(
            valid.select(F.col(KEY).alias("src"), F.col("linked_store_id").alias("dst"))
        )
        rows = keys.where(F.col(AS_OF) == at)
        by_store = components.withColumnRenamed("vertex", KEY)
        members = components.select(F.col("vertex").alias("node"), "component")
        linked = rows.join(by_store, KEY).join(members, "component")
        parts.append(linked.select(KEY, AS_OF, "node"))
        # A store without a valid link is a ring of one: itself.
        alone = rows.join(by_store, KEY, "left_anti")
        parts.append(alone.select(KEY, AS_OF, F.col(KEY).alias("node")))
    result = parts[0]
    for part in parts[1:]:
        result = result.unionByName(part)
    return result


def _reached_by_search(keys: DataFrame, links: DataFrame, cap: int) -> DataFrame:
    """(store_id, as_of, node) by a breadth-first search from every row at its own time.

    A row stops growing once it has reached more than ``cap`` stores (its size is the cap
    and its count missing then, whatever else it would reach).
    """
    from pyspark.sql import functions as F

    reached = keys.select(KEY, AS_OF, F.col(KEY).alias("node")).localCheckpoint()
    frontier = reached
    link = links.select(
        F.col(KEY).alias("node"), F.col("linked_store_id").alias("next"), "linked_at",
        "unlinked_at",
    )  # fmt: skip
    valid = (F.col("linked_at") < F.col(AS_OF)) & (
        F.col("unlinked_at").isNull() | (F.col("unlinked_at") >= F.col(AS_OF))
    )
    while not frontier.isEmpty():
        step = frontier.join(link, "node").where(valid)
        step = step.select(KEY, AS_OF, F.col("next").alias("node")).distinct()
        new = step.join(reached, [KEY, AS_OF, "node"], "left_anti").localCheckpoint()
        reached = reached.unionByName(new).localCheckpoint()
        over = reached.groupBy(KEY, AS_OF).count().where(F.col("count") > cap)
        frontier = new.join(over, [KEY, AS_OF], "left_anti")
    return reached
