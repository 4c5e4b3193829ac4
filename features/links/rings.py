"""Rings: connected components through the links valid at each row's as-of time.

Rows are sorted by as-of time and cut into buckets. Within a bucket spanning [ta, tb], links
valid throughout it are contracted into components with one whole-graph pass (scipy); only
the few links that start or end inside the bucket remain, and a breadth-first search over
the contracted graph (component sizes as weights, vectorised across rows) checks them
against each row's own as-of time. One as-of time for every store is a single bucket with
nothing left to search; a handful of rows (online scoring) skips the contraction and
searches the raw graph. Searches stop once a ring passes the cap, so giant IP components
stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.links.graph import (
    Graph,
    LabelIndex,
    csr,
    expand,
    latest_labels,
    unique_ints,
    valid_at,
)

# Rings are 3-30 stores; a component past this is a chain of weak links, not a ring. Ring
# sizes are capped here and ring label counts are left missing for such components.
DEFAULT_MAX_RING_SIZE = 1000


# Ring search tuning (see the rings section and experiments/RESULTS.md); results never
# depend on these, only time and memory do.
_BFS_BATCH_ROWS = 8192  # rows searched together; bounds memory on large rings


_MAX_BUCKETS = 16  # whole-graph component passes per call at most (about)


_BUCKET_MIN_ROWS = 2048


_CONTRACT_MIN_ROWS = 256  # fewer rows: search the raw graph instead of a whole-graph pass


@dataclass(frozen=True)
class Rings:
    """Per-row ring size (capped) and known-counterfeit count in the ring (NaN if too big)."""

    size: np.ndarray
    counterfeit: np.ndarray


@dataclass(frozen=True)
class _Contraction:
    """Graph whose nodes are components of a bucket's stable links (identity: no contraction).

    ``comp`` maps store codes to nodes of ``graph`` (None: identity); ``weight`` is the number
    of stores per node (None: 1 each).
    """

    graph: Graph
    comp: np.ndarray | None
    weight: np.ndarray | None


def ring_stats(
    graph: Graph,
    labels: LabelIndex | None,
    stores: np.ndarray,
    times: np.ndarray | None,
    cap: int,
    *,
    bucket_rows: int | None = None,
    contract: bool | None = None,
) -> Rings:
    """Ring size and known-counterfeit count in the ring, per row, at each row's as-of time.

    Args:
        graph: The links.
        labels: Indexed labels, or None (counts are then missing).
        stores: Store code per row.
        times: As-of time per row in ns, or None (every link and label counts).
        cap: Ring size cap; larger rings get size ``cap`` and a missing count.
        bucket_rows: Rows per time bucket (rows sharing a time stay together); default
            ``max(_BUCKET_MIN_ROWS, rows / _MAX_BUCKETS)``.
        contract: Contract stable links (default: only for buckets of
            ``_CONTRACT_MIN_ROWS`` rows or more). Results do not depend on these settings.
    """
    n = len(stores)
    size, counterfeit = np.zeros(n, np.int64), np.full(n, np.nan)
    per_bucket = bucket_rows or max(_BUCKET_MIN_ROWS, -(-n // _MAX_BUCKETS))
    for rows in _time_buckets(times, n, per_bucket):
        bucket_times = None if times is None else times[rows]
        use = contract if contract is not None else len(rows) >= _CONTRACT_MIN_ROWS
        contraction = _contract(graph, bucket_times) if use else _Contraction(graph, None, None)
        first = None if bucket_times is None else int(bucket_times.min())
        state = None if labels is None else _bucket_labels(contraction, labels, first)
        for batch in np.array_split(rows, -(-len(rows) // _BFS_BATCH_ROWS)):
            batch_times = None if times is None else times[batch]
            size[batch], counterfeit[batch] = _ring_batch(
                contraction, labels, state, stores[batch], batch_times, cap
            )
    return Rings(size=size, counterfeit=counterfeit)


def _time_buckets(times: np.ndarray | None, n: int, per_bucket: int) -> list[np.ndarray]:
    """Row indices cut into buckets of about ``per_bucket`` rows, in as-of order."""
    if n == 0:
        return []
    if times is None:
        return [np.arange(n)]
    order = np.argsort(times, kind="stable")
    # Bucket of a row = position of the first row with its time // per_bucket, so rows
    # sharing a time always share a bucket.
    sorted_times = times[order]
    first = np.searchsorted(sorted_times, sorted_times, side="left")
    bucket = first // per_bucket
    bounds = np.flatnonzero(np.diff(bucket)) + 1
    return np.split(order, bounds)


def _contract(graph: Graph, bucket_times: np.ndarray | None) -> _Contraction:
    """Contract the links valid throughout the bucket; keep the ones that change inside it."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n = graph.n_nodes
    if bucket_times is None:
        stable = np.ones(len(graph.dst), bool)
        live = ~stable
    else:
        first, last = bucket_times.min(), bucket_times.max()
        stable = (graph.start < first) & (graph.end >= last)
        live = (graph.start < last) & (graph.end >= first) & ~stable
    matrix = csr_matrix(
        (np.ones(int(stable.sum()), np.int32), (graph.src[stable], graph.dst[stable])),
        shape=(n, n),
    )
    n_comp, comp = connected_components(matrix, directed=False)
    src, dst = comp[graph.src[live]], comp[graph.dst[live]]
    keep = src != dst  # links inside a component add nothing
    contracted = csr(src[keep], dst[keep], graph.start[live][keep], graph.end[live][keep], n_comp)
    return _Contraction(contracted, comp, np.bincount(comp, minlength=n_comp))


def _ring_batch(
    contraction: _Contraction,
    labels: LabelIndex | None,
    state: _BucketLabels | None,
    stores: np.ndarray,
    times: np.ndarray | None,
    cap: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Ring size and counterfeit count for a batch of rows of one bucket."""
    starts = stores if contraction.comp is None else contraction.comp[stores]
    count, visited, overflow = _weighted_bfs(
        contraction.graph, starts, times, cap, contraction.weight
    )
    counterfeit = np.full(len(stores), np.nan)
    if labels is not None and state is not None:
        counterfeit = _ring_counterfeit(labels, state, stores, times, visited, contraction)
        counterfeit[overflow] = np.nan
    return np.minimum(count, cap), counterfeit


def _weighted_bfs(
    graph: Graph,
    starts: np.ndarray,
    times: np.ndarray | None,
    cap: int,
    weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Breadth-first search from every row at once, stopping rows whose ring passes ``cap``.

    Returns:
        Stores reached per row, the visited keys ``row * n_nodes + node`` (sorted) and
        whether each row passed the cap.
    """
    n_rows, n = len(starts), graph.n_nodes
    rows = np.arange(n_rows, dtype=np.int64)
    visited = rows * n + starts  # sorted: one start per row, rows ascending
    count = np.ones(n_rows, np.int64) if weight is None else weight[starts].astype(np.int64)
    overflow = count > cap
    f_rows, f_nodes = rows[~overflow], starts[~overflow].astype(np.int64)
    while len(f_rows):
        origin, edges = expand(graph, f_nodes)
        here = f_rows[origin]
        keep = valid_at(graph, edges, None if times is None else times[here])
        keys = unique_ints(here[keep] * n + graph.dst[edges[keep]])
        at = np.minimum(np.searchsorted(visited, keys), len(visited) - 1)
        new = keys[visited[at] != keys]
        new_rows, new_nodes = new // n, new % n
        added = weight[new_nodes] if weight is not None else None
        count += np.bincount(new_rows, weights=added, minlength=n_rows).astype(np.int64)
        overflow |= count > cap
        new = new[~overflow[new_rows]]
        visited = np.union1d(visited, new)
        f_rows, f_nodes = new // n, new % n
    return count, visited, overflow


@dataclass(frozen=True)
class _BucketLabels:
    """Label state of a bucket: counts at its first as-of time, plus what changes inside it.

    ``per_node``: counterfeit stores per (contracted) node just before ``first``;
    ``changed``: stores labelled at or after ``first``, sorted by their node ``changed_node``.
    """

    first: int | None
    per_node: np.ndarray
    changed: np.ndarray
    changed_node: np.ndarray


def _bucket_labels(
    contraction: _Contraction, labels: LabelIndex, first: int | None
) -> _BucketLabels:
    """Counterfeit counts per node at the bucket's first as-of time, and the later labels."""
    n = contraction.graph.n_nodes
    comp = contraction.comp if contraction.comp is not None else np.arange(n)
    before = None if first is None else np.full(len(labels.stores), first, np.int64)
    at_first = latest_labels(labels, labels.stores, before) == 1
    per_node = np.bincount(comp[labels.stores], weights=at_first, minlength=n)
    if first is None:
        changed = np.zeros(0, np.int64)
    else:
        changed = unique_ints(labels.store[labels.time >= first])
        changed = changed[np.argsort(comp[changed], kind="stable")]
    return _BucketLabels(first, per_node, changed, comp[changed])


def _ring_counterfeit(
    labels: LabelIndex,
    state: _BucketLabels,
    stores: np.ndarray,
    times: np.ndarray | None,
    visited: np.ndarray,
    contraction: _Contraction,
) -> np.ndarray:
    """Known-counterfeit stores in each row's ring at its as-of time, never the store itself."""
    n_rows, n = len(stores), contraction.graph.n_nodes
    v_rows, v_nodes = visited // n, visited % n
    count = np.bincount(v_rows, weights=state.per_node[v_nodes], minlength=n_rows)
    if len(state.changed) and times is not None:
        # Stores labelled inside the bucket, in a node the row reached: correct their count.
        lo = np.searchsorted(state.changed_node, v_nodes, side="left")
        counts = np.searchsorted(state.changed_node, v_nodes, side="right") - lo
        pair_rows = np.repeat(v_rows, counts)
        members = state.changed[
            np.repeat(lo, counts)
            + np.arange(int(counts.sum()))
            - np.repeat(np.cumsum(counts) - counts, counts)
        ]
        now = latest_labels(labels, members, times[pair_rows]) == 1
        then = latest_labels(labels, members, np.full(len(members), state.first)) == 1
        count += np.bincount(pair_rows, weights=now.astype(float) - then, minlength=n_rows)
    # Never the store's own label, however the search came back to it.
    return count - (latest_labels(labels, stores, times) == 1)
