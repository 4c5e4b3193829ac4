"""Static-graph link features: exact statistics, and no label ever reaching its own row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.byo import LINK_PREFIX, own_link_features
from features.links import hops
from features.spec import Feature, FeatureSpec

P = LINK_PREFIX


def _links(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["store_id", "linked_store_id"])


def test_two_hops_means_distance_exactly_two():
    # A-B-C-D path plus B-E: A's 2-hop set is {C, E}, never A itself nor its neighbour B.
    graph = hops.static_graph(_links([("A", "B"), ("B", "C"), ("C", "D"), ("B", "E")]), [])
    nodes = list(graph.nodes)
    two = {nodes[i]: sorted(nodes[j] for j in graph.two_hop[i].indices) for i in range(len(nodes))}
    assert two == {"A": ["C", "E"], "B": ["D"], "C": ["A", "E"], "D": ["B"], "E": ["A", "C"]}


def test_neighbour_statistics_match_a_loop_with_missing_values():
    rng = np.random.default_rng(0)
    n = 60
    pairs = {tuple(sorted(p)) for p in rng.integers(0, n, size=(120, 2)).tolist() if p[0] != p[1]}
    links = _links([(f"s{a}", f"s{b}") for a, b in pairs])
    graph = hops.static_graph(links, [f"s{i}" for i in range(n)])
    values = rng.normal(size=(len(graph.nodes), 3))
    values[rng.random(values.shape) < 0.2] = np.nan
    rows = np.arange(len(graph.nodes))
    for pattern in (graph.adjacency, graph.two_hop):
        got = hops.neighbour_statistics(pattern, values, rows)
        for i in rows:
            near = values[pattern[i].indices]
            for j in range(3):
                column = near[:, j][~np.isnan(near[:, j])]
                expected = {
                    "mean": column.mean(), "max": column.max(), "min": column.min(),
                    "std": column.std(),
                } if len(column) else dict.fromkeys(hops.STATS, np.nan)  # fmt: skip
                for stat in hops.STATS:
                    np.testing.assert_allclose(got[stat][i, j], expected[stat], atol=1e-12)
    gcn = hops.gcn_means(graph, values, rows)
    degree = graph.degree + 1
    filled = np.nan_to_num(values)
    for i in rows[:10]:
        around = [i, *graph.adjacency[i].indices]
        manual = sum(filled[k] / np.sqrt(degree[i] * degree[k]) for k in around)
        np.testing.assert_allclose(gcn[i], manual, atol=1e-12)


def _random_graph(seed: int, n: int = 80):
    rng = np.random.default_rng(seed)
    ids = [f"s{i:03d}" for i in range(n)]
    pairs = rng.integers(0, n, size=(3 * n, 2))
    links = _links([(ids[a], ids[b]) for a, b in pairs if a != b])
    snapshot = pd.DataFrame({"store_id": ids, "x": rng.normal(size=n)})
    labelled = rng.random(n) < 0.6
    labels = pd.DataFrame(
        {"store_id": np.array(ids)[labelled],
         "is_counterfeit": (rng.random(labelled.sum()) < 0.3).astype("int64")}
    )  # fmt: skip
    spec = FeatureSpec((Feature("x", "custom", "float", "x"),))
    return snapshot, links, labels, spec


LABEL_COLUMNS = [
    f"{P}label_share_1hop", f"{P}labelled_1hop", f"{P}label_share_2hop", f"{P}labelled_2hop",
    f"{P}known_counterfeit", f"{P}known_counterfeit_share", f"{P}ring_known_counterfeit",
]  # fmt: skip


def _features(snapshot, links, labels, spec, groups=None) -> pd.DataFrame:
    rows = labels[["store_id"]].reset_index(drop=True)
    out, _ = own_link_features(rows, snapshot, links, labels, spec, groups)
    return out.set_index("store_id")[LABEL_COLUMNS]


def test_no_label_features_see_the_rows_own_label_at_any_hop():
    """Flip each labelled store's label: its own features must not move (2-hop included)."""
    snapshot, links, labels, spec = _random_graph(seed=1)
    before = _features(snapshot, links, labels, spec)
    for i in range(0, len(labels), 5):
        flipped = labels.copy()
        flipped.loc[i, "is_counterfeit"] ^= 1
        after = _features(snapshot, links, flipped, spec)
        store = labels.loc[i, "store_id"]
        pd.testing.assert_series_equal(after.loc[store], before.loc[store])
    assert not before.equals(after)  # the flips did reach other stores


def test_out_of_fold_groups_hide_the_labels_of_a_rows_own_group():
    snapshot, links, labels, spec = _random_graph(seed=2)
    groups = pd.Series(np.arange(len(labels)) % 3, index=labels["store_id"].to_numpy())
    before = _features(snapshot, links, labels, spec, groups)

    def neighbours_of(store: str) -> set[str]:
        return set(links.loc[links["store_id"] == store, "linked_store_id"]) | set(
            links.loc[links["linked_store_id"] == store, "store_id"]
        )

    def split_by_group(store: str) -> tuple[list[str], list[str]]:
        labelled = [s for s in sorted(neighbours_of(store)) if s in groups.index]
        return (
            [s for s in labelled if groups[s] == groups[store]],
            [s for s in labelled if groups[s] != groups[store]],
        )

    row = next(s for s in before.index if all(split_by_group(s)))
    same, other = split_by_group(row)
    for store, moves in ((same[0], False), (other[0], True)):
        flipped = labels.assign(
            is_counterfeit=np.where(labels["store_id"] == store, 1, 0) ^ labels["is_counterfeit"]
        )
        after = _features(snapshot, links, flipped, spec, groups)
        changed = after.loc[row, f"{P}labelled_1hop"] != before.loc[row, f"{P}labelled_1hop"] or (
            abs(after.loc[row, f"{P}label_share_1hop"] - before.loc[row, f"{P}label_share_1hop"])
            > 0.01
        )
        assert changed == moves, store


def test_labels_count_only_when_known_before_the_rows_time():
    links = _links([("A", "B"), ("B", "C")])
    snapshot = pd.DataFrame({"store_id": list("ABC"), "x": [1.0, 2.0, 3.0]})
    spec = FeatureSpec((Feature("x", "custom", "float", "x"),))
    labels = pd.DataFrame(
        {"store_id": ["B", "C"], "is_counterfeit": [1, 1],
         "labeled_at": pd.to_datetime(["2024-01-10", "2024-03-01"])}
    )  # fmt: skip
    rows = pd.DataFrame(
        {"store_id": ["A", "A"], "as_of": pd.to_datetime(["2024-02-01", "2024-04-01"])}
    )
    out, _ = own_link_features(rows, snapshot, links, labels, spec)
    assert out[f"{P}labelled_1hop"].tolist() == [1, 1]  # B, known at both times
    assert out[f"{P}labelled_2hop"].tolist() == [0, 1]  # C, labelled between the two times


@pytest.mark.parametrize("kinds", [None, ["device", "phone"]])
def test_only_kinds_present_in_the_links_get_columns(kinds):
    snapshot, links, labels, spec = _random_graph(seed=3)
    if kinds:
        links = links.assign(kind=np.where(np.arange(len(links)) % 2, *kinds))
    _, out_spec = own_link_features(labels[["store_id"]], snapshot, links, labels, spec)
    totals = {f"{P}linked_stores", f"{P}labeled_linked_stores", f"{P}new_linked_stores_30d"}
    per_kind = [n for n in out_spec.names if n.endswith("_stores") and n not in totals]
    assert per_kind == ([f"{P}device_stores", f"{P}phone_stores"] if kinds else [])
