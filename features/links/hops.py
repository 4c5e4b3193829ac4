"""Features of a static link graph: 1- and 2-hop neighbour statistics, GCN means, labels nearby.

For a team's own data, whose links usually carry no times, these add what measured well on
public graph-fraud data through the same learner: every numeric column aggregated over the
direct and the 2-hop neighbours (mean, max, min, std), GCN-normalised neighbour means, how
spread the neighbours' degrees are, and label-aware features — the smoothed share of
counterfeit stores among the *labelled* neighbours, 1 and 2 hops away.

Leakage rules (tested directly):

* a store's own label never counts: the 2-hop set is the stores at distance exactly 2, so a
  walk that returns to the store (i -> j -> i) adds nothing;
* labels count only if known before the row's as-of time (rows with ``as_of``);
* with ``groups`` (training rows without label times), a row sees no label of a store in its
  own group, so a label never informs a feature of a row scored with it out of fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from features.links.graph import latest_labels
from features.links.spec import GROUP
from features.spec import Feature

STATS: tuple[str, ...] = ("mean", "max", "min", "std")
# Label shares are Laplace-smoothed: (counterfeit + 1) / (labelled + 2). The prior is a
# constant, not the labels' positive rate: that rate contains the row's own label.
LABEL_PRIOR = 0.5
LABEL_PRIOR_STRENGTH = 2.0
# Columns aggregated at a time (the (links x columns) block stays small).
CHUNK_COLUMNS = 32
# Beyond this many 2-hop pairs the 2-hop block is skipped (it grows with degree squared).
MAX_TWO_HOP_PAIRS = 50_000_000


@dataclass(frozen=True)
class StaticGraph:
    """The links as symmetric sparse adjacency over a node index, and its 2-hop pattern.

    Attributes:
        nodes: Store id of each node.
        adjacency: Binary, symmetric, no self-links.
        two_hop: Binary pattern of the pairs at distance exactly 2, or None if too large.
    """

    nodes: pd.Index
    adjacency: sparse.csr_matrix
    two_hop: sparse.csr_matrix | None

    @property
    def degree(self) -> np.ndarray:
        """Direct neighbours per node."""
        return np.asarray(self.adjacency.sum(axis=1)).ravel()


def static_graph(links: pd.DataFrame, stores: Sequence[object]) -> StaticGraph:
    """The graph of every link (times ignored) over ``stores`` and the stores links name."""
    named = [pd.Series(stores), links["store_id"], links["linked_store_id"]]
    nodes = pd.Index(pd.unique(pd.concat(named, ignore_index=True)))
    src = nodes.get_indexer(links["store_id"])
    dst = nodes.get_indexer(links["linked_store_id"])
    keep = src != dst
    n = len(nodes)
    both = (np.r_[src[keep], dst[keep]], np.r_[dst[keep], src[keep]])
    adjacency = sparse.csr_matrix((np.ones(len(both[0]), np.float64), both), shape=(n, n))
    adjacency.data[:] = 1.0  # duplicate links collapse to one
    walks_estimate = float((adjacency.sum(axis=1).A1 ** 2).sum())
    two_hop = None
    if walks_estimate <= MAX_TWO_HOP_PAIRS:
        walks = (adjacency @ adjacency).tocsr()
        walks.setdiag(0)
        walks.eliminate_zeros()
        walks.data[:] = 1.0
        # Distance exactly 2: reachable in two steps but not a direct neighbour.
        two_hop = (walks - walks.multiply(adjacency)).tocsr()
        two_hop.eliminate_zeros()
    return StaticGraph(nodes, adjacency.tocsr(), two_hop)


def neighbour_statistics(
    pattern: sparse.csr_matrix, values: np.ndarray, rows: np.ndarray
) -> dict[str, np.ndarray]:
    """Mean, max, min and std of ``values`` over each row's neighbours in ``pattern``.

    Args:
        pattern: Binary node x node matrix (adjacency or 2-hop).
        values: Node x columns float matrix (NaN: missing, ignored).
        rows: Node index of each output row.

    Returns:
        ``{stat: rows x columns array}``; NaN where a row has no neighbour with a value.
    """
    sub = pattern[rows]
    indptr, columns = sub.indptr, sub.indices
    counts = np.diff(indptr)
    out = {stat: np.full((len(rows), values.shape[1]), np.nan) for stat in STATS}
    has = counts > 0
    starts = indptr[:-1][has]
    owner = np.repeat(np.arange(len(rows)), counts)
    for first in range(0, values.shape[1], CHUNK_COLUMNS):
        block = values[columns, first : first + CHUNK_COLUMNS]
        present = ~np.isnan(block)
        filled = np.where(present, block, 0.0)
        n = np.zeros((len(rows), block.shape[1]))
        total = np.zeros_like(n)
        squares = np.zeros_like(n)
        np.add.at(n, owner, present)
        np.add.at(total, owner, filled)
        np.add.at(squares, owner, filled**2)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n
            var = np.maximum(squares / n - mean**2, 0.0)
        part = slice(first, first + block.shape[1])
        out["mean"][:, part] = np.where(n > 0, mean, np.nan)
        out["std"][:, part] = np.where(n > 0, np.sqrt(var), np.nan)
        if len(starts):
            high = np.fmax.reduceat(np.where(present, block, -np.inf), starts, axis=0)
            low = np.fmin.reduceat(np.where(present, block, np.inf), starts, axis=0)
            out["max"][has, part] = np.where(np.isfinite(high), high, np.nan)
            out["min"][has, part] = np.where(np.isfinite(low), low, np.nan)
    return out


def gcn_means(graph: StaticGraph, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """GCN-normalised neighbourhood means: sum over j in N(i) + {i} of x_j / sqrt(d_i d_j).

    Degrees count the store itself (``d = degree + 1``); missing values count as 0, as a
    graph convolution would see them after imputation.
    """
    degree = graph.degree + 1.0
    scale = 1.0 / np.sqrt(degree)
    filled = np.nan_to_num(values, nan=0.0)
    propagated = (
        graph.adjacency[rows] @ (filled * scale[:, None]) + filled[rows] * scale[rows, None]
    )
    return np.asarray(propagated) * scale[rows, None]


def degree_spread(graph: StaticGraph, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and standard deviation of the direct neighbours' degrees (NaN without any)."""
    stats = neighbour_statistics(graph.adjacency, graph.degree[:, None].astype(float), rows)
    return {"mean": stats["mean"][:, 0], "std": stats["std"][:, 0]}


def label_shares(
    pattern: sparse.csr_matrix,
    rows: np.ndarray,
    row_times: np.ndarray | None,
    row_groups: np.ndarray | None,
    label_nodes: np.ndarray,
    label_index,
    node_groups: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed counterfeit share among the labelled neighbours in ``pattern``, and their count.

    A neighbour's label counts if it was known before the row's time (its latest such
    label) and, with groups, if the neighbour is in another group than the row's store.

    Returns:
        ``(share, labelled)``: ``(counterfeit + s * LABEL_PRIOR) / (labelled + s)`` with
        ``s = LABEL_PRIOR_STRENGTH`` (0.5 without labelled neighbours), and the number of
        labelled neighbours.
    """
    sub = pattern[rows]
    owner = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    neighbour = sub.indices
    times = None if row_times is None else row_times[owner]
    # Labels are indexed by their store's code in ``label_index``; map nodes to those codes.
    codes = label_nodes[neighbour]
    value = np.full(len(neighbour), -1, np.int8)
    known = codes >= 0
    value[known] = latest_labels(label_index, codes[known], None if times is None else times[known])
    visible = value >= 0
    if row_groups is not None and node_groups is not None:
        visible &= node_groups[neighbour] != row_groups[owner]
    labelled = np.bincount(owner[visible], minlength=len(rows)).astype(float)
    counterfeit = np.bincount(owner[visible & (value == 1)], minlength=len(rows)).astype(float)
    s = LABEL_PRIOR_STRENGTH
    return (counterfeit + s * LABEL_PRIOR) / (labelled + s), labelled


def hop_specs(prefix: str, columns: Sequence[str], two_hop: bool) -> list[Feature]:
    """Spec entries of the columns ``static_link_features`` adds, in column order."""
    hops = [("nb", "direct neighbours")] + ([("nb2", "stores 2 links away")] if two_hop else [])
    specs = []
    for tag, where in hops:
        for column in columns:
            for stat in STATS:
                specs.append(
                    Feature(
                        f"{prefix}{tag}_{stat}_{column}", GROUP, "float",
                        f"{stat} over {where} of: {column}", "none",
                        f"{stat} over {where} of {column}: {{value:.3g}}",
                    )
                )  # fmt: skip
    for column in columns:
        specs.append(
            Feature(
                f"{prefix}gcn_{column}", GROUP, "float",
                f"degree-normalised mean of {column} over the store and its neighbours", "none",
                f"{column} around the store (degree-normalised): {{value:.3g}}",
            )
        )  # fmt: skip
    specs += [
        Feature(f"{prefix}nb_degree_mean", GROUP, "float",
                "mean number of links of the direct neighbours", "none",
                "its linked stores have {value:.1f} links on average"),
        Feature(f"{prefix}nb_degree_std", GROUP, "float",
                "spread (std) of the direct neighbours' numbers of links", "none",
                "its linked stores' link counts spread by {value:.1f}"),
        Feature(f"{prefix}label_share_1hop", GROUP, "float",
                "Laplace-smoothed share of counterfeit stores among the labelled direct "
                "neighbours (labels known before the as-of time, never the store's own)", "higher",
                "{value:.0%} of its checked linked stores sold counterfeits"),
        Feature(f"{prefix}labelled_1hop", GROUP, "int",
                "labelled direct neighbours counted by the share", "none",
                "{value:.0f} of its linked stores have been checked"),
    ]  # fmt: skip
    if two_hop:
        specs += [
            Feature(f"{prefix}nb2_count", GROUP, "int", "stores exactly 2 links away", "none",
                    "{value:.0f} stores 2 links away"),
            Feature(f"{prefix}label_share_2hop", GROUP, "float",
                    "Laplace-smoothed share of counterfeit stores among the labelled stores 2 "
                    "links away (never the store itself)", "higher",
                    "{value:.0%} of the checked stores 2 links away sold counterfeits"),
            Feature(f"{prefix}labelled_2hop", GROUP, "int",
                    "labelled stores 2 links away counted by the share", "none",
                    "{value:.0f} stores 2 links away have been checked"),
        ]  # fmt: skip
    return specs
