"""Exact path-dependent TreeSHAP for a LightGBM booster, compiled once at model load.

LightGBM's ``pred_contrib`` walks every tree recursively for every row, extending and
unwinding a path of permutation weights at each node. The same values come out of a
simpler closed form per leaf. For a leaf with value ``v`` whose root path splits on the
distinct features ``P`` (``d`` of them), let for each ``j`` in ``P``

* ``r_j``: the share of the training rows that follow the path at ``j``'s splits
  (the product of child/parent counts, LightGBM's "zero fraction"), and
* ``o_j``: 1 if the row itself follows the path at every split on ``j``, else 0.

The leaf's expected value given a coalition ``S`` is ``v * prod(o_j if j in S else r_j)``,
so the Shapley value of ``i`` from this leaf is ``v * (o_i - r_i) * sum_s w(s, d) * q_s``,
where ``q_s`` are the coefficients of ``prod_{j != i} (o_j * y + r_j)`` and
``w(s, d) = s! (d - s - 1)! / d!``. The product over all of ``P`` is built once per leaf
and divided by ``i``'s factor, so a leaf costs ``O(d^2)``.

Since a leaf's values depend on the row only through which of its path features the row
follows (a bit mask), they are tabulated once per model for all ``2^d`` masks (the
precomputation of FastTreeSHAP v2) when ``d`` is small; deeper leaves use the closed form
per row. Per row, each split is decided once, in parent-before-child order, and passes its
children the mask of path features followed so far; each leaf then adds ``d`` table values.
Everything that depends only on the model is laid out in flat arrays when the model loads;
the row loop is compiled by numba on first use and cached on disk.

The result equals ``booster.predict(X, pred_contrib=True)``, bias column included, to
rounding (tests hold it to 1e-6 with missing values and categorical splits), and LightGBM's
split semantics are followed exactly: missing-value types, default directions, categorical
bitsets, negative categories going right.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

if TYPE_CHECKING:
    import lightgbm as lgb

# LightGBM's decision_type bits (include/LightGBM/tree.h).
_CATEGORICAL_MASK = 1
_DEFAULT_LEFT_MASK = 2
_MISSING_ZERO = 1
_MISSING_NAN = 2
# LightGBM's kZeroThreshold: values this close to zero count as zero for "Zero" missing type.
_ZERO_THRESHOLD = 1e-35
# Leaves with up to 10 distinct path features get a table (2^d x d values, 80 KiB at most),
# within 32M values (256 MiB) per model; deeper leaves are computed per row.
TABLE_MAX_FEATURES = 10
TABLE_BUDGET = 32 * 2**20
# Masks are 64-bit integers with one bit per distinct path feature.
MAX_PATH_FEATURES = 62


class TreeShapError(ValueError):
    """The booster cannot be explained by this implementation (e.g. multiclass, linear trees)."""


@dataclass(frozen=True)
class TreePaths:
    """A booster's trees as flat arrays, indexed globally over all trees.

    Internal nodes come tree by tree, each parent before its children (LightGBM numbers a
    split's new node after its parent). A child index ``c >= 0`` is an internal node,
    ``c < 0`` the leaf ``~c``. A leaf's ``d`` distinct path features are its slots, in
    the order they first appear on the path; ``node_slot`` is the position of a node's
    feature among them, the same for every leaf below the node.
    """

    n_features: int
    expected_value: float
    node_feature: np.ndarray  # int64
    node_threshold: np.ndarray  # float64 (unused for categorical splits)
    node_decision: np.ndarray  # int64, LightGBM decision_type
    node_cat_start: np.ndarray  # int64, first bitset word of a categorical split
    node_cat_words: np.ndarray  # int64, number of bitset words
    node_left: np.ndarray  # int64, global child
    node_right: np.ndarray  # int64, global child
    node_slot: np.ndarray  # int64, bit of the node's feature in the masks below it
    node_is_root: np.ndarray  # bool
    cat_bits: np.ndarray  # uint32, all categorical bitsets
    leaf_value: np.ndarray  # float64
    leaf_slot_start: np.ndarray  # int64, first slot of the leaf
    leaf_slot_count: np.ndarray  # int64, d
    slot_feature: np.ndarray  # int64
    slot_share: np.ndarray  # float64, r_j
    weights: np.ndarray  # float64 (max_d + 1, max_d): w(s, d) at [d, s]
    table_start: np.ndarray  # int64 per leaf: offset of its table, -1 without one
    table: np.ndarray  # float64: per tabled leaf, 2^d masks x d contributions

    @property
    def n_leaves(self) -> int:
        """Number of leaves over all trees."""
        return len(self.leaf_value)

    @property
    def max_path_features(self) -> int:
        """The largest number of distinct features on one root-to-leaf path."""
        return int(self.leaf_slot_count.max(initial=0))


def _parse_trees(model_text: str) -> tuple[int, list[dict[str, str]]]:
    """``(number of features, [tree fields])`` from LightGBM's text model format."""
    header, _, body = model_text.partition("\nTree=")
    fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    if int(fields.get("num_tree_per_iteration", "1")) != 1:
        raise TreeShapError("only single-output boosters (binary, regression) are supported")
    trees = []
    for block in ("Tree=" + body).split("\nTree="):
        block = block.split("end of trees", 1)[0]
        tree = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if tree.get("is_linear", "0") != "0":
            raise TreeShapError("linear trees are not supported")
        trees.append(tree)
    return int(fields["max_feature_idx"]) + 1, trees


def _numbers(tree: dict[str, str], key: str, dtype: type) -> np.ndarray:
    """One space-separated array field of a tree (empty if absent)."""
    text = tree.get(key, "").strip()
    return np.array(text.split(), dtype=dtype) if text else np.zeros(0, dtype=dtype)


def _shapley_weights(max_d: int) -> np.ndarray:
    """``w[d, s] = s! (d - s - 1)! / d!`` for ``0 <= s < d <= max_d``."""
    weights = np.zeros((max_d + 1, max(max_d, 1)))
    for d in range(1, max_d + 1):
        for s in range(d):
            weights[d, s] = factorial(s) * factorial(d - s - 1) / factorial(d)
    return weights


class _Layout:
    """Collects the flat arrays of ``TreePaths`` tree by tree."""

    def __init__(self) -> None:
        self.nodes: dict[str, list] = {
            k: [] for k in ("feature", "threshold", "decision", "cat0", "catn", "left",
                            "right", "slot", "root")
        }  # fmt: skip
        self.leaves: dict[str, list] = {"value": [], "slot0": [], "slotn": []}
        self.slots: dict[str, list] = {"feature": [], "share": []}
        self.cat_bits: list[np.ndarray] = []
        self.cat_words = 0
        self.expected = 0.0

    def add_tree(self, tree: dict[str, str]) -> None:
        """Append one tree's splits and leaves."""
        values = _numbers(tree, "leaf_value", np.float64)
        if int(tree["num_leaves"]) == 1:
            self.expected += float(values[0])  # a constant tree: only the expected value
            return
        feature = _numbers(tree, "split_feature", np.int64)
        threshold = _numbers(tree, "threshold", np.float64)
        decision = _numbers(tree, "decision_type", np.int64)
        children = (_numbers(tree, "left_child", np.int64),
                    _numbers(tree, "right_child", np.int64))  # fmt: skip
        counts = (_numbers(tree, "internal_count", np.float64),
                  _numbers(tree, "leaf_count", np.float64))  # fmt: skip
        boundaries = _numbers(tree, "cat_boundaries", np.int64)
        self.expected += float(np.dot(counts[1], values) / counts[0][0])
        node_base, leaf_base = len(self.nodes["feature"]), len(self.leaves["value"])
        slots = self._walk(feature, children, counts)
        n = self.nodes
        for node in range(len(feature)):
            categorical = bool(decision[node] & _CATEGORICAL_MASK)
            # A categorical split's threshold indexes the tree's bitset table.
            cat = int(threshold[node]) if categorical else 0
            n["feature"].append(feature[node])
            n["threshold"].append(0.0 if categorical else threshold[node])
            n["decision"].append(decision[node])
            n["cat0"].append(self.cat_words + boundaries[cat] if categorical else 0)
            n["catn"].append(boundaries[cat + 1] - boundaries[cat] if categorical else 0)
            for side, child in zip(("left", "right"), children, strict=True):
                c = child[node]
                n[side].append(node_base + c if c >= 0 else ~(leaf_base + ~c))
            n["slot"].append(slots[node])
            n["root"].append(node == 0)
        for leaf, value in enumerate(values):
            self._add_leaf(value, slots[~leaf])
        bits = _numbers(tree, "cat_threshold", np.uint32)
        self.cat_bits.append(bits)
        self.cat_words += len(bits)

    def _walk(self, feature, children, counts) -> dict[int, object]:
        """Per node its slot; per leaf (key ``~leaf``) its ``[(feature, share)]`` slots."""
        found: dict[int, object] = {}
        # (node, distinct features so far in path order, their shares)
        stack: list[tuple[int, list[int], list[float]]] = [(0, [], [])]
        while stack:
            node, path, shares = stack.pop()
            if node < 0:
                found[node] = list(zip(path, shares, strict=True))
                continue
            f = int(feature[node])
            slot = path.index(f) if f in path else len(path)
            found[node] = slot
            parent = counts[0][node]
            for child in (children[0][node], children[1][node]):
                child_count = counts[0][child] if child >= 0 else counts[1][~child]
                share = child_count / parent if parent else 0.0
                if slot < len(path):
                    # A feature split on again: its share multiplies (LightGBM's unwinding).
                    next_shares = [*shares[:slot], shares[slot] * share, *shares[slot + 1 :]]
                    stack.append((child, path, next_shares))
                else:
                    stack.append((child, [*path, f], [*shares, share]))
        return found

    def _add_leaf(self, value: float, slots: list[tuple[int, float]]) -> None:
        self.leaves["value"].append(value)
        self.leaves["slot0"].append(len(self.slots["feature"]))
        self.leaves["slotn"].append(len(slots))
        for feature, share in slots:
            self.slots["feature"].append(feature)
            self.slots["share"].append(share)


def tree_paths(
    booster: lgb.Booster,
    table_max_features: int = TABLE_MAX_FEATURES,
    table_budget: int = TABLE_BUDGET,
) -> TreePaths:
    """Lay out a booster's trees for ``shap_values`` (once per model, well under a second).

    Args:
        booster: A binary or regression LightGBM booster.
        table_max_features: Leaves with at most this many distinct path features get a
            precomputed table (``2^d x d`` values); 0 computes every leaf per row.
        table_budget: At most this many table values in all (8 bytes each); leaves past
            it are computed per row.

    Raises:
        TreeShapError: multiclass boosters, linear trees, or a path with more than 62
            distinct features (masks are 64-bit).
    """
    n_features, trees = _parse_trees(booster.model_to_string())
    layout = _Layout()
    for tree in trees:
        layout.add_tree(tree)
    slot_count = np.array(layout.leaves["slotn"], dtype=np.int64)
    max_d = int(slot_count.max(initial=0))
    if max_d > MAX_PATH_FEATURES:
        raise TreeShapError(
            f"a tree path splits on {max_d} distinct features, at most {MAX_PATH_FEATURES}"
        )
    weights = _shapley_weights(max_d)
    slot_start = np.array(layout.leaves["slot0"], dtype=np.int64)
    leaf_value = np.array(layout.leaves["value"], dtype=np.float64)
    slot_share = np.array(layout.slots["share"], dtype=np.float64)
    table_start, size = _table_layout(slot_count, table_max_features, table_budget)
    table = np.zeros(size)
    _fill_tables(leaf_value, slot_start, slot_count, slot_share, table_start, weights, table)
    n = layout.nodes

    def ints(key: str) -> np.ndarray:
        return np.array(n[key], dtype=np.int64)

    return TreePaths(
        n_features=n_features,
        expected_value=layout.expected,
        node_feature=ints("feature"),
        node_threshold=np.array(n["threshold"], dtype=np.float64),
        node_decision=ints("decision"),
        node_cat_start=ints("cat0"),
        node_cat_words=ints("catn"),
        node_left=ints("left"),
        node_right=ints("right"),
        node_slot=ints("slot"),
        node_is_root=np.array(n["root"], dtype=np.bool_),
        cat_bits=np.concatenate([np.zeros(0, np.uint32), *layout.cat_bits]),
        leaf_value=leaf_value,
        leaf_slot_start=slot_start,
        leaf_slot_count=slot_count,
        slot_feature=np.array(layout.slots["feature"], dtype=np.int64),
        slot_share=slot_share,
        weights=weights,
        table_start=table_start,
        table=table,
    )


def _table_layout(slot_count: np.ndarray, max_features: int, budget: int) -> tuple[np.ndarray, int]:
    """Offsets of the leaves' tables (-1: none) and their total size, within the budget."""
    sizes = np.where(slot_count <= max_features, (1 << slot_count) * slot_count, -1)
    start = np.full(len(slot_count), -1, dtype=np.int64)
    used = 0
    for leaf, size in enumerate(sizes):
        if size >= 0 and used + size <= budget:
            start[leaf] = used
            used += int(size)
    return start, used


@njit(cache=True, nogil=True)
def _goes_left(fval, threshold, decision, cat_start, cat_words, cat_bits):
    """LightGBM's ``Tree::Decision`` for one node (numerical or categorical)."""
    if decision & _CATEGORICAL_MASK:
        if np.isnan(fval):
            return False  # NaN always goes right
        category = int(fval)  # truncation, as static_cast<int>
        if category < 0 or category // 32 >= cat_words:
            return False
        word = cat_bits[cat_start + category // 32]
        return (word >> np.uint32(category % 32)) & np.uint32(1) == 1
    missing = (decision >> 2) & 3
    if np.isnan(fval) and missing != _MISSING_NAN:
        fval = 0.0
    if (missing == _MISSING_ZERO and -_ZERO_THRESHOLD <= fval <= _ZERO_THRESHOLD) or (
        missing == _MISSING_NAN and np.isnan(fval)
    ):
        return (decision & _DEFAULT_LEFT_MASK) != 0
    return fval <= threshold


@njit(cache=True, nogil=True)
def _leaf_contributions(d, mask, shares, value, weights, poly, quotient, result):
    """``result[k]``: the leaf's SHAP value for its ``k``-th slot (module docstring).

    ``mask`` bit ``k`` is ``o_k``; ``poly``/``quotient`` are scratch of length ``d + 1``.
    """
    # poly: coefficients of prod_j (o_j * y + r_j), lowest power first.
    poly[0] = 1.0
    for k in range(d):
        o, r = float((mask >> k) & 1), shares[k]
        poly[k + 1] = o * poly[k]
        for s in range(k, 0, -1):
            poly[s] = r * poly[s] + o * poly[s - 1]
        poly[0] = r * poly[0]
    for k in range(d):
        o, r = float((mask >> k) & 1), shares[k]
        if o == r:
            result[k] = 0.0  # (o - r) is zero; also covers r == 0 with o == 0
            continue
        # quotient: the product without slot k's factor (o * y + r).
        if o == 1.0:
            # Synthetic division by (y + r), top down; 0 <= r <= 1 keeps it stable.
            quotient[d - 1] = poly[d]
            for s in range(d - 1, 0, -1):
                quotient[s - 1] = poly[s] - r * quotient[s]
        else:
            for s in range(d):
                quotient[s] = poly[s] / r
        total = 0.0
        for s in range(d):
            total += weights[d, s] * quotient[s]
        result[k] = value * (o - r) * total


@njit(cache=True, nogil=True)
def _fill_tables(leaf_value, leaf_slot_start, leaf_slot_count, slot_share, table_start,
                 weights, table):  # fmt: skip
    """Every tabled leaf's contributions for each of its ``2^d`` masks."""
    max_d = weights.shape[0] - 1
    poly = np.empty(max_d + 1)
    quotient = np.empty(max_d + 1)
    for leaf in range(leaf_value.shape[0]):
        at = table_start[leaf]
        if at < 0:
            continue
        d = leaf_slot_count[leaf]
        shares = slot_share[leaf_slot_start[leaf] : leaf_slot_start[leaf] + d]
        for mask in range(1 << d):
            row = table[at + mask * d : at + (mask + 1) * d]
            _leaf_contributions(d, mask, shares, leaf_value[leaf], weights, poly, quotient, row)


@njit(cache=True, nogil=True)
def _shap_rows(x, out, node_feature, node_threshold, node_decision, node_cat_start,
               node_cat_words, node_left, node_right, node_slot, node_is_root, cat_bits,
               leaf_value, leaf_slot_start, leaf_slot_count, slot_feature, slot_share,
               weights, expected_value, table_start, table):  # fmt: skip
    """Fill ``out`` (rows x features + 1, zeroed) with SHAP values; see the module docstring."""
    n_nodes, n_leaves = node_feature.shape[0], leaf_value.shape[0]
    max_d = weights.shape[0] - 1
    node_mask = np.empty(n_nodes, dtype=np.int64)
    leaf_mask = np.empty(n_leaves, dtype=np.int64)
    poly = np.empty(max_d + 1)
    quotient = np.empty(max_d + 1)
    result = np.empty(max_d + 1)
    bias = out.shape[1] - 1
    for row in range(x.shape[0]):
        # Masks flow from each split to its children: a side the row does not take clears
        # the bit of the split's feature; all bits start set at a root.
        for node in range(n_nodes):
            mask = np.int64(-1) if node_is_root[node] else node_mask[node]
            cleared = mask & ~(np.int64(1) << node_slot[node])
            left = _goes_left(
                x[row, node_feature[node]], node_threshold[node], node_decision[node],
                node_cat_start[node], node_cat_words[node], cat_bits,
            )  # fmt: skip
            for child, child_mask in ((node_left[node], mask if left else cleared),
                                      (node_right[node], cleared if left else mask)):  # fmt: skip
                if child >= 0:
                    node_mask[child] = child_mask
                else:
                    leaf_mask[~child] = child_mask
        for leaf in range(n_leaves):
            start, d = leaf_slot_start[leaf], leaf_slot_count[leaf]
            mask = leaf_mask[leaf] & ((np.int64(1) << d) - 1)
            at = table_start[leaf]
            if at >= 0:
                at += mask * d
                for k in range(d):
                    out[row, slot_feature[start + k]] += table[at + k]
            else:
                shares, value = slot_share[start : start + d], leaf_value[leaf]
                _leaf_contributions(d, mask, shares, value, weights, poly, quotient, result)
                for k in range(d):
                    out[row, slot_feature[start + k]] += result[k]
        out[row, bias] = expected_value


def shap_values(paths: TreePaths, matrix: np.ndarray) -> np.ndarray:
    """SHAP values of every row: ``rows x (features + 1)``, the last column the bias.

    Args:
        paths: ``tree_paths(booster)``.
        matrix: Rows x features, as given to ``booster.predict`` (cast to float64).

    Raises:
        TreeShapError: the matrix does not have the booster's number of columns.
    """
    x = np.ascontiguousarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != paths.n_features:
        raise TreeShapError(
            f"matrix has shape {x.shape}, the booster expects {paths.n_features} columns"
        )
    out = np.zeros((x.shape[0], paths.n_features + 1))
    p = paths
    _shap_rows(
        x, out, p.node_feature, p.node_threshold, p.node_decision, p.node_cat_start,
        p.node_cat_words, p.node_left, p.node_right, p.node_slot, p.node_is_root, p.cat_bits,
        p.leaf_value, p.leaf_slot_start, p.leaf_slot_count, p.slot_feature, p.slot_share,
        p.weights, p.expected_value, p.table_start, p.table,
    )  # fmt: skip
    return out
