"""The links and labels as integer arrays, and the point-in-time lookups over them.

Store ids of every input share one integer code space; links are indexed both ways in CSR
form by source store, with their validity interval in ns; labels are sorted by (store,
time) so "the latest label before T" is a binary search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.links.inputs import LinkGraphError, timestamps_ns

NEVER = np.iinfo(np.int64).max  # "no end" and "no as-of time"


@dataclass(frozen=True)
class Graph:
    """Directed links in CSR form over store codes (each undirected link both ways).

    ``kind`` is the index into the kinds tuple, -1 for other or missing kinds; ``start`` and
    ``end`` are ``linked_at``/``unlinked_at`` in ns (``end`` is ``NEVER`` when open).
    """

    indptr: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    kind: np.ndarray
    start: np.ndarray
    end: np.ndarray
    n_nodes: int


@dataclass(frozen=True)
class LabelIndex:
    """Labels sorted by (store code, labeled_at, is_counterfeit) for point-in-time lookup."""

    store: np.ndarray
    time: np.ndarray
    value: np.ndarray
    stores: np.ndarray  # distinct labelled store codes


def encode_ids(*columns: pd.Series) -> tuple[list[np.ndarray], pd.Index]:
    """Integer codes for the store ids of several columns, in one shared code space."""
    codes, uniques = pd.factorize(pd.concat(columns, ignore_index=True))
    bounds = np.cumsum([len(column) for column in columns])[:-1]
    return np.split(codes.astype(np.int64), bounds), pd.Index(uniques)


def build_graph(
    links: pd.DataFrame,
    src: np.ndarray,
    dst: np.ndarray,
    kinds: Sequence[str],
    n_nodes: int,
) -> Graph:
    """Index the links both ways, without self-links and duplicates.

    Args:
        links: The links table (for kind and times).
        src: Store code of ``links.store_id``.
        dst: Store code of ``links.linked_store_id``.
        kinds: Kinds that get their own index; others and missing kinds get -1.
        n_nodes: Number of store codes.
    """
    n = len(links)
    kind = np.full(n, -1, np.int8)
    if "kind" in links.columns and kinds:
        # Factorize first: mapping a handful of distinct kinds is much cheaper than all rows.
        values, distinct = pd.factorize(links["kind"])
        lookup = np.append(pd.Index(list(kinds)).get_indexer(distinct), -1).astype(np.int8)
        kind = lookup[values]  # factorize gives -1 for missing kinds: the appended -1
    start = (
        timestamps_ns(links["linked_at"], "links.linked_at")
        if "linked_at" in links.columns
        else np.full(n, np.iinfo(np.int64).min, np.int64)
    )
    end = (
        timestamps_ns(links["unlinked_at"], "links.unlinked_at", missing_as=NEVER)
        if "unlinked_at" in links.columns
        else np.full(n, NEVER, np.int64)
    )
    # One orientation per undirected link, so links given both ways collapse to one.
    low, high = np.minimum(src, dst), np.maximum(src, dst)
    keep = (low != high) & ~_duplicates((low, high, kind, start, end))
    low, high, kind, start, end = (a[keep] for a in (low, high, kind, start, end))
    return csr(
        np.concatenate([low, high]),
        np.concatenate([high, low]),
        np.concatenate([start, start]),
        np.concatenate([end, end]),
        n_nodes,
        np.concatenate([kind, kind]),
    )


def _duplicates(columns: tuple[np.ndarray, ...]) -> np.ndarray:
    """Rows equal in every column to an earlier row (hash, then exact check on the hits).

    Cheaper than sorting on every column; a hash collision only keeps a duplicate, which
    costs time but never changes a feature.
    """
    mixed = np.zeros(len(columns[0]), np.uint64)
    for i, column in enumerate(columns):
        bits = column.astype(np.int64).view(np.uint64)  # negative values keep their bits
        mixed = (mixed ^ bits) * np.uint64(0x9E3779B97F4A7C15 + 2 * i)
    codes, _ = pd.factorize(mixed)
    first = np.empty(codes.max() + 1 if len(codes) else 0, np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # earliest row per hash
    earlier = first[codes]
    same = earlier != np.arange(len(codes))
    for column in columns:
        same &= column == column[earlier]
    return same


def csr(
    src: np.ndarray,
    dst: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    n_nodes: int,
    kind: np.ndarray | None = None,
) -> Graph:
    """Index directed edges by source node (then destination)."""
    order = np.argsort(src.astype(np.int64) * n_nodes + dst)
    indptr = np.zeros(n_nodes + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n_nodes), out=indptr[1:])
    return Graph(
        indptr=indptr,
        src=src[order],
        dst=dst[order],
        kind=(kind if kind is not None else np.full(len(src), -1, np.int8))[order],
        start=start[order],
        end=end[order],
        n_nodes=n_nodes,
    )


def build_labels(labels: pd.DataFrame, store: np.ndarray, timed: bool) -> LabelIndex:
    """Index labels by store code; without ``labeled_at`` every label is known at time 0."""
    values = pd.to_numeric(labels["is_counterfeit"], errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        rows = list(labels.index[bad.to_numpy()][:5])
        raise LinkGraphError(
            f"labels.is_counterfeit: {int(bad.sum())} value(s) not 0/1, e.g. at rows {rows}"
        )
    if timed:
        time = timestamps_ns(labels["labeled_at"], "labels.labeled_at")
    else:
        time = np.zeros(len(labels), np.int64)
    value = values.to_numpy(np.int8)
    # On equal times counterfeit sorts last, so it wins ties (one positive test-buy is enough).
    order = np.lexsort((value, time, store))
    return LabelIndex(
        store=store[order], time=time[order], value=value[order], stores=unique_ints(store)
    )


def expand(graph: Graph, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All out-edges of ``nodes``: (index into ``nodes``, edge index), vectorised."""
    begin = graph.indptr[nodes]
    counts = graph.indptr[nodes + 1] - begin
    origin = np.repeat(np.arange(len(nodes)), counts)
    # Edge index = start of the node's range + position within it.
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return origin, np.repeat(begin, counts) + offsets


def valid_at(graph: Graph, edges: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """Which edges count at the given as-of times (all of them without as-of times)."""
    if times is None:
        return np.ones(len(edges), bool)
    return (graph.start[edges] < times) & (graph.end[edges] >= times)


def neighbour_edges(
    graph: Graph, stores: np.ndarray, times: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Links valid at each row's as-of time: (row index, edge index)."""
    rows, edges = expand(graph, stores)
    keep = valid_at(graph, edges, None if times is None else times[rows])
    return rows[keep], edges[keep]


def latest_labels(labels: LabelIndex, stores: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """Each (store, as-of) query's latest label strictly before the as-of: 0, 1 or -1 (none)."""
    if len(labels.store) == 0 or len(stores) == 0:
        return np.full(len(stores), -1, np.int8)
    if times is None:
        times = np.full(len(stores), NEVER, np.int64)
    # Rank times jointly so (store, time) packs into one sortable int64 key.
    grid = unique_ints(np.concatenate([labels.time, times]))
    width = len(grid) + 1
    label_keys = labels.store.astype(np.int64) * width + np.searchsorted(grid, labels.time)
    query_keys = stores.astype(np.int64) * width + np.searchsorted(grid, times)
    last = np.searchsorted(label_keys, query_keys, side="left") - 1
    found = (last >= 0) & (labels.store[np.maximum(last, 0)] == stores)
    return np.where(found, labels.value[np.maximum(last, 0)], -1).astype(np.int8)


def row_lookup(
    row_stores: np.ndarray,
    row_times: np.ndarray | None,
    stores: np.ndarray,
    times: np.ndarray | None,
) -> np.ndarray:
    """Index of the feature row with exactly (store, as-of), or -1 where there is none."""
    if times is None:
        position = pd.Index(row_stores).get_indexer(stores)
        return position.astype(np.int64)
    grid = unique_ints(np.concatenate([row_times, times]))
    width = len(grid) + 1
    row_keys = row_stores.astype(np.int64) * width + np.searchsorted(grid, row_times)
    order = np.argsort(row_keys, kind="stable")
    sorted_keys = row_keys[order]
    query = stores.astype(np.int64) * width + np.searchsorted(grid, times)
    at = np.minimum(np.searchsorted(sorted_keys, query), max(len(sorted_keys) - 1, 0))
    hit = (sorted_keys[at] == query) if len(sorted_keys) else np.zeros(len(query), bool)
    return np.where(hit, order[at], -1)


@dataclass(frozen=True)
class Neighbours:
    """Links valid at each row's as-of time, and the distinct (row, linked store) pairs.

    ``rows``/``edges``: one entry per valid link; ``pair_rows``/``pair_nodes``: distinct
    pairs sorted by row; ``pair_of_edge``: the pair each valid link belongs to.
    """

    n_rows: int
    rows: np.ndarray
    edges: np.ndarray
    pair_rows: np.ndarray
    pair_nodes: np.ndarray
    pair_of_edge: np.ndarray


def neighbours(graph: Graph, stores: np.ndarray, times: np.ndarray | None) -> Neighbours:
    """Direct neighbours of every row at its as-of time."""
    rows, edges = neighbour_edges(graph, stores, times)
    keys = rows.astype(np.int64) * graph.n_nodes + graph.dst[edges]
    unique, inverse = np.unique(keys, return_inverse=True)
    return Neighbours(
        n_rows=len(stores),
        rows=rows,
        edges=edges,
        pair_rows=unique // graph.n_nodes,
        pair_nodes=unique % graph.n_nodes,
        pair_of_edge=inverse.reshape(-1),
    )


def unique_ints(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array.

    Sorting then dropping repeats: NumPy 2.4's hash-based ``np.unique`` takes ~1.8 s on two
    million distinct int64s, about 70x longer.
    """
    ordered = np.sort(values, kind="stable")
    keep = np.ones(len(ordered), bool)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]
