import json

import numpy as np
import pandas as pd
import pytest

from features.contract.histories import connect
from features.links import (
    LinkGraphError,
    add_link_features,
    link_graph_part,
    login_links,
    neighbour_snapshots,
)
from features.links import rings as rings_module
from features.links.graph import build_graph, build_labels, unique_ints
from features.spec import FeatureSpec

T0 = pd.Timestamp("2024-01-01")


# Ring search settings that must all give the same values: search the raw graph; contract
# stable links over one bucket spanning every as-of time; one bucket per as-of time.
RING_SETTINGS = {
    "search": {"contract": False, "bucket_rows": 10**9},
    "one-bucket": {"contract": True, "bucket_rows": 10**9},
    "per-time": {"contract": True, "bucket_rows": 1},
}


@pytest.fixture(params=list(RING_SETTINGS))
def ring_setting(request, monkeypatch):
    """Run a test under each ring search setting."""
    original = rings_module.ring_stats

    def forced(*args, **kwargs):
        return original(*args, **(RING_SETTINGS[request.param] | kwargs))

    monkeypatch.setattr(rings_module, "ring_stats", forced)
    return request.param


every_ring_setting = pytest.mark.usefixtures("ring_setting")


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


def links_frame(rows: list[tuple]) -> pd.DataFrame:
    """(store, linked, kind, linked_at day, unlinked_at day or None) -> links table."""
    return pd.DataFrame(
        {
            "store_id": [r[0] for r in rows],
            "linked_store_id": [r[1] for r in rows],
            "kind": [r[2] for r in rows],
            "linked_at": [day(r[3]) for r in rows],
            "unlinked_at": [day(r[4]) if r[4] is not None else pd.NaT for r in rows],
        }
    )


def labels_frame(rows: list[tuple]) -> pd.DataFrame:
    """(store, is_counterfeit, labeled_at day) -> labels table."""
    return pd.DataFrame(
        {
            "store_id": [r[0] for r in rows],
            "is_counterfeit": [r[1] for r in rows],
            "labeled_at": [day(r[2]) for r in rows],
            "source": "test_buy",
        }
    )


def at(frame: pd.DataFrame, store: str, column: str, as_of: float | None = None):
    mask = frame["store_id"] == store
    if as_of is not None:
        mask &= frame["as_of"] == day(as_of)
    (value,) = frame.loc[mask, column].tolist()
    return value


# A ring A-B (device), B-C (wifi), A-C (ip), C-D (ip); E isolated; F only linked at day 50.
RING = links_frame(
    [
        ("A", "B", "device", 1, None),
        ("B", "C", "wifi", 2, None),
        ("A", "C", "ip", 3, None),
        ("C", "D", "ip", 4, None),
        ("E", "E", "device", 1, None),  # self-link: dropped
        ("D", "F", "device", 50, None),
    ]
)


@every_ring_setting
def test_degree_per_kind_and_totals():
    features = pd.DataFrame({"store_id": list("ABCDE"), "as_of": day(10)})
    out, _ = add_link_features(features, RING)
    assert out["link_linked_stores"].tolist() == [2, 2, 3, 1, 0]
    assert out["link_device_stores"].tolist() == [1, 1, 0, 0, 0]
    assert out["link_wifi_stores"].tolist() == [0, 1, 1, 0, 0]
    assert out["link_ip_stores"].tolist() == [1, 0, 2, 1, 0]


@every_ring_setting
def test_pair_linked_by_several_kinds_counts_once_in_total():
    links = links_frame([("A", "B", "device", 1, None), ("B", "A", "ip", 2, None)])
    features = pd.DataFrame({"store_id": ["A", "B"], "as_of": day(5)})
    out, _ = add_link_features(features, links)
    assert out["link_linked_stores"].tolist() == [1, 1]
    assert out["link_device_stores"].tolist() == [1, 1]
    assert out["link_ip_stores"].tolist() == [1, 1]


@every_ring_setting
def test_duplicate_and_reversed_links_change_nothing():
    features = pd.DataFrame(
        {"store_id": list("ABCDF"), "as_of": [day(10), day(3), day(10), day(60), day(60)]}
    )
    reversed_links = RING.rename(
        columns={"store_id": "linked_store_id", "linked_store_id": "store_id"}
    )
    doubled = pd.concat([RING, reversed_links, RING], ignore_index=True)
    labels = labels_frame([("B", 1, 2), ("F", 0, 1)])
    once, _ = add_link_features(features, RING, labels)
    pd.testing.assert_frame_equal(once, add_link_features(features, doubled, labels)[0])


@every_ring_setting
def test_ring_size_through_two_hops_and_time():
    features = pd.DataFrame(
        {"store_id": ["A", "D", "E", "A", "F"], "as_of": [day(10)] * 3 + [day(3), day(60)]}
    )
    out, _ = add_link_features(features, RING)
    # At day 10: A-B-C-D through two hops; E alone. At day 3 the A-C ip link (day 3) does
    # not count yet, but A-B (1) and B-C (2) do. At day 60 F has joined through D.
    assert out["link_ring_size"].tolist() == [4, 4, 1, 3, 5]


@every_ring_setting
def test_link_formed_at_or_after_as_of_does_not_count():
    features = pd.DataFrame({"store_id": ["A", "A", "A"], "as_of": [day(0.5), day(1), day(1.01)]})
    links = links_frame([("A", "B", "device", 1, None)])
    out, _ = add_link_features(features, links)
    assert out["link_linked_stores"].tolist() == [0, 0, 1]
    assert out["link_ring_size"].tolist() == [1, 1, 2]


@every_ring_setting
def test_unlinked_link_stops_counting_from_unlinked_at():
    links = links_frame([("A", "B", "ip", 1, 5)])
    features = pd.DataFrame({"store_id": "A", "as_of": [day(4), day(5), day(5.5)]})
    out, _ = add_link_features(features, links)
    # Valid while linked_at < T <= unlinked_at.
    assert out["link_linked_stores"].tolist() == [1, 1, 0]
    assert out["link_ring_size"].tolist() == [2, 2, 1]


@every_ring_setting
def test_same_link_with_another_end_is_kept():
    links = links_frame([("A", "B", "ip", 1, 5), ("B", "A", "ip", 1, None)])
    features = pd.DataFrame({"store_id": "A", "as_of": [day(3), day(7)]})
    out, _ = add_link_features(features, links)
    assert out["link_ip_stores"].tolist() == [1, 1]


@every_ring_setting
def test_label_at_or_after_as_of_does_not_count_and_latest_label_wins():
    links = links_frame([("A", "B", "device", 1, None)])
    labels = labels_frame([("B", 1, 10), ("B", 0, 20)])
    features = pd.DataFrame({"store_id": "A", "as_of": [day(5), day(10), day(15), day(25)]})
    out, _ = add_link_features(features, links, labels)
    assert out["link_known_counterfeit"].tolist() == [0, 0, 1, 0]
    assert out["link_known_genuine"].tolist() == [0, 0, 0, 1]
    assert out["link_labeled_linked_stores"].tolist() == [0, 0, 1, 1]
    assert out["link_device_known_counterfeit"].tolist() == [0, 0, 1, 0]
    assert out["link_ring_known_counterfeit"].tolist() == [0, 0, 1, 0]


@every_ring_setting
def test_label_at_the_earliest_as_of_counts_for_later_rows():
    # The label's time equals the first row's as-of time: not known then, known after.
    links = links_frame([("A", "B", "device", 1, None), ("B", "C", "ip", 1, None)])
    labels = labels_frame([("C", 1, 5)])
    features = pd.DataFrame({"store_id": ["A", "A"], "as_of": [day(5), day(8)]})
    out, _ = add_link_features(features, links, labels)
    assert out["link_ring_known_counterfeit"].tolist() == [0, 1]


@every_ring_setting
def test_own_label_never_counts_even_through_a_cycle():
    # Triangle A-B-C: the search from A comes back to A through B and C.
    links = links_frame(
        [("A", "B", "device", 1, None), ("B", "C", "wifi", 1, None), ("C", "A", "ip", 1, None)]
    )
    labels = labels_frame([("A", 1, 2)])
    features = pd.DataFrame({"store_id": list("ABC"), "as_of": day(5)})
    out, _ = add_link_features(features, links, labels)
    assert out["link_known_counterfeit"].tolist() == [0, 1, 1]
    assert out["link_ring_known_counterfeit"].tolist() == [0, 1, 1]
    # Among the labelled linked stores: A has none (NaN), B and C have A only.
    share = out["link_known_counterfeit_share"].tolist()
    assert np.isnan(share[0]) and share[1:] == [1.0, 1.0]


@every_ring_setting
def test_ring_counterfeit_counts_stores_two_hops_away():
    labels = labels_frame([("D", 1, 0)])
    features = pd.DataFrame({"store_id": ["A", "C"], "as_of": day(10)})
    out, _ = add_link_features(features, RING, labels)
    assert out["link_known_counterfeit"].tolist() == [0, 1]
    assert out["link_ring_known_counterfeit"].tolist() == [1, 1]


@every_ring_setting
def test_no_as_of_counts_every_link_and_label_but_the_own():
    links = links_frame([("A", "B", "device", 100, 101), ("B", "C", "ip", 200, None)])
    labels = labels_frame([("A", 1, 300), ("B", 1, 300), ("C", 0, 300)])
    features = pd.DataFrame({"store_id": ["A", "B", "C"]})
    out, spec = add_link_features(features, links, labels)
    assert out["link_linked_stores"].tolist() == [1, 2, 1]
    assert out["link_ring_size"].tolist() == [3, 3, 3]
    assert out["link_known_counterfeit"].tolist() == [1, 1, 1]
    assert out["link_known_genuine"].tolist() == [0, 1, 0]
    assert out["link_ring_known_counterfeit"].tolist() == [1, 1, 2]
    assert "link_new_linked_stores_30d" not in spec.names


@every_ring_setting
def test_links_without_times_or_kind_and_numeric_ids():
    links = pd.DataFrame({"store_id": [1, 2], "linked_store_id": [2, 3]})
    features = pd.DataFrame({"store_id": [3, 1], "as_of": day(1), "x": [1.0, 2.0]})
    out, spec = add_link_features(features, links, neighbour_columns=[])
    assert out["link_linked_stores"].tolist() == [1, 1]
    assert out["link_ring_size"].tolist() == [3, 3]
    assert spec.names == ["link_linked_stores", "link_ring_size"]


@every_ring_setting
def test_appending_links_and_labels_after_as_of_changes_nothing():
    rng = np.random.default_rng(3)
    stores = [f"s{i}" for i in range(40)]
    base_links = links_frame(
        [
            (
                stores[a],
                stores[b],
                ["device", "wifi", "ip"][k],
                float(t),
                None if u < 0.5 else float(t + 20 * u),
            )
            for a, b, k, t, u in zip(
                rng.integers(0, 40, 80),
                rng.integers(0, 40, 80),
                rng.integers(0, 3, 80),
                rng.uniform(0, 60, 80),
                rng.uniform(0, 1, 80),
                strict=True,
            )
        ]
    )
    base_labels = labels_frame(
        [(stores[s], int(c), float(t)) for s, c, t in zip(*_draws(rng, 30, 60), strict=True)]
    )
    features = pd.DataFrame(
        {
            "store_id": rng.choice(stores, 60),
            "as_of": [day(float(t)) for t in rng.integers(5, 60, 60)],
            "x": rng.normal(size=60),
        }
    ).drop_duplicates(["store_id", "as_of"])
    before, _ = add_link_features(features, base_links, base_labels)

    # Everything appended happens at or after the latest as-of time.
    late_links = links_frame(
        [(stores[i], stores[i + 1], "device", 60, None) for i in range(0, 39, 2)]
        + [("s0", "s1", "ip", 61, None)]
    )
    late_labels = labels_frame([(s, 1, 60 + i % 3) for i, s in enumerate(stores)])
    after, _ = add_link_features(
        features,
        pd.concat([base_links, late_links], ignore_index=True),
        pd.concat([base_labels, late_labels], ignore_index=True),
    )
    pd.testing.assert_frame_equal(before, after)
    # And the appended data does change things once the as-of time is past it.
    later = features.drop_duplicates("store_id").assign(as_of=day(70))
    assert not add_link_features(later, base_links, base_labels)[0].equals(
        add_link_features(
            later,
            pd.concat([base_links, late_links], ignore_index=True),
            pd.concat([base_labels, late_labels], ignore_index=True),
        )[0]
    )


def _draws(rng: np.random.Generator, n_stores: int, days: int):
    return rng.integers(0, n_stores, 50), rng.integers(0, 2, 50), rng.uniform(0, days, 50)


@every_ring_setting
def test_neighbour_aggregates_use_same_as_of_rows():
    links = links_frame([("A", "B", "device", 1, None), ("A", "C", "ip", 1, None)])
    features = pd.DataFrame(
        {
            "store_id": ["A", "B", "B", "C", "A", "C"],
            "as_of": [day(10), day(10), day(20), day(20), day(20), day(30)],
            "score": [0.0, 1.0, 5.0, 7.0, 0.0, 3.0],
            "name": ["a", "b", "b", "c", "a", "c"],  # not numeric: passed through only
        }
    )
    out, spec = add_link_features(features, links)
    assert at(out, "A", "link_nb_mean_score", 10) == 1.0  # C has no day-10 row: ignored
    assert at(out, "A", "link_nb_mean_score", 20) == 6.0
    assert at(out, "A", "link_nb_max_score", 20) == 7.0
    assert at(out, "C", "link_nb_mean_score", 20) == 0.0  # its only neighbour is A@20
    assert np.isnan(at(out, "C", "link_nb_mean_score", 30))  # no A@30 row
    assert at(out, "B", "link_nb_max_score", 20) == 0.0
    assert "link_nb_mean_name" not in spec.names
    assert out["name"].tolist() == features["name"].tolist()


def test_spec_matches_appended_columns_and_serializes():
    features = pd.DataFrame(
        {"store_id": list("ABCD"), "as_of": day(10), "x": [1, 2, 3, 4], "flag": True}
    )
    labels = labels_frame([("B", 1, 2)])
    out, spec = add_link_features(features, RING, labels)
    appended = out.drop(columns=["x", "flag"])
    spec.check_table(appended)
    assert FeatureSpec.from_json(spec.to_json()) == spec
    json.loads(spec.to_json())
    assert {f.group for f in spec} == {"link_graph"}
    assert all(f.reason(1.0) for f in spec)
    assert spec["link_known_counterfeit"].reason(2) == (
        "shares a device, Wi-Fi or IP with 2 store(s) already caught selling counterfeits"
    )
    pd.testing.assert_frame_equal(out[features.columns], features)


@every_ring_setting
def test_output_keeps_row_order_and_index():
    features = pd.DataFrame(
        {"store_id": ["D", "A", "C", "B"], "as_of": [day(10), day(3), day(10), day(60)]},
        index=[40, 10, 30, 20],
    )
    out, _ = add_link_features(features, RING)
    assert out.index.tolist() == [40, 10, 30, 20]
    assert out["store_id"].tolist() == ["D", "A", "C", "B"]
    assert out["link_linked_stores"].tolist() == [1, 1, 3, 2]
    # A repeated index label is kept as is, not aligned on.
    again, _ = add_link_features(features.set_axis([7, 7, 8, 8]), RING)
    assert again.index.tolist() == [7, 7, 8, 8]
    assert again["link_linked_stores"].tolist() == [1, 1, 3, 2]


@every_ring_setting
def test_recent_links_window():
    links = links_frame([("A", "B", "device", 1, None), ("A", "C", "ip", 35, None)])
    features = pd.DataFrame({"store_id": "A", "as_of": [day(20), day(40)]})
    out, _ = add_link_features(features, links)
    assert out["link_new_linked_stores_30d"].tolist() == [1, 1]
    assert out["link_linked_stores"].tolist() == [1, 2]


def test_ring_settings_agree_on_random_graphs():
    rng = np.random.default_rng(11)
    n = 80
    stores = pd.Index([f"s{i}" for i in range(n)])
    # A chain of 25 stores (past cap 10 from day 10) plus random links, some unlinked later,
    # and labels that flip over time.
    chain = [(f"s{i}", f"s{i + 1}", "ip", float(i), None) for i in range(24)]
    extra = [
        (f"s{a}", f"s{b}", "device", float(t), None if u < 0.6 else float(t + 30 * u))
        for a, b, t, u in zip(
            rng.integers(25, n, 60),
            rng.integers(25, n, 60),
            rng.uniform(0, 40, 60),
            rng.random(60),
            strict=True,
        )
    ]
    links = links_frame(chain + extra)
    # Whole days for labels and as-of times, so labels land exactly on as-of times too.
    labels = labels_frame(
        [(f"s{s}", int(c), float(int(t))) for s, c, t in zip(*_draws(rng, n, 40), strict=True)]
    )
    code = stores.get_indexer
    src, dst = code(links["store_id"]), code(links["linked_store_id"])
    graph = build_graph(links, src, dst, (), n)
    label_index = build_labels(labels, code(labels["store_id"]), True)
    rows = rng.integers(0, n, 300)
    times = np.array([day(int(t)).value for t in rng.uniform(0, 45, 300)], np.int64)
    results = {
        name: rings_module.ring_stats(graph, label_index, rows, times, 10, **setting)
        for name, setting in RING_SETTINGS.items()
    }
    for name, rings in results.items():
        np.testing.assert_array_equal(rings.size, results["per-time"].size, err_msg=name)
        np.testing.assert_array_equal(
            rings.counterfeit, results["per-time"].counterfeit, err_msg=name
        )
    sizes = results["per-time"].size
    assert (sizes <= 10).all() and (sizes == 10).any() and (sizes == 1).any()
    assert np.isnan(results["per-time"].counterfeit).any()
    assert (results["per-time"].counterfeit > 0).any()


@every_ring_setting
def test_ring_cap_boundary():
    # Triangle A-B-C (3 stores = the cap) and a path D-E-F-G (4 stores, past the cap).
    links = links_frame(
        [("A", "B", "ip", 1, None), ("B", "C", "ip", 1, None)]
        + [("D", "E", "ip", 1, None), ("E", "F", "ip", 1, None), ("F", "G", "ip", 1, None)]
    )
    labels = labels_frame([("C", 1, 1), ("G", 1, 1)])
    features = pd.DataFrame({"store_id": ["A", "D"], "as_of": day(5)})
    out, spec = add_link_features(features, links, labels, max_ring_size=3)
    assert out["link_ring_size"].tolist() == [3, 3]
    assert out["link_ring_known_counterfeit"].iloc[0] == 1
    assert np.isnan(out["link_ring_known_counterfeit"].iloc[1])
    assert "capped at 3" in spec["link_ring_size"].description


def test_bad_inputs_raise_clear_errors():
    features = pd.DataFrame({"store_id": ["A", "A"], "as_of": [day(1), day(1)]})
    with pytest.raises(LinkGraphError, match="share a"):
        add_link_features(features, RING)
    with pytest.raises(LinkGraphError, match="links: missing column"):
        add_link_features(features.head(1), RING.drop(columns="linked_store_id"))
    with pytest.raises(LinkGraphError, match="labeled_at"):
        add_link_features(features.head(1), RING, labels_frame([]).drop(columns="labeled_at"))
    with pytest.raises(LinkGraphError, match="not 0/1"):
        add_link_features(features.head(1), RING, labels_frame([("B", 2, 1)]))
    with pytest.raises(LinkGraphError, match="text or all numbers"):
        add_link_features(pd.DataFrame({"store_id": [1]}), RING)
    with pytest.raises(LinkGraphError, match="features.as_of"):
        add_link_features(pd.DataFrame({"store_id": ["A"], "as_of": ["not a time"]}), RING)
    with pytest.raises(LinkGraphError, match="pass another prefix"):
        add_link_features(pd.DataFrame({"store_id": ["A"], "link_ring_size": [1]}), RING)


def test_neighbour_snapshots_returns_missing_neighbour_rows():
    snapshots = pd.DataFrame({"store_id": ["A", "B", "C"], "as_of": [day(10), day(10), day(3)]})
    extra = neighbour_snapshots(snapshots, RING)
    # A@10 -> B (present), C@10 (missing); B@10 -> A (present), C@10; C@3 -> B@3 (B-C from 2).
    assert list(map(tuple, extra.to_numpy())) == [("B", day(3)), ("C", day(10))]


def test_neighbour_snapshots_at_one_time_skips_only_when_every_neighbour_is_present():
    everyone = pd.DataFrame({"store_id": list("ABCDEF"), "as_of": day(60)})
    assert neighbour_snapshots(everyone, RING).empty
    without_c = everyone[everyone["store_id"] != "C"]
    extra = neighbour_snapshots(without_c, RING)
    assert list(map(tuple, extra.to_numpy())) == [("C", day(60))]


# --------------------------------------------------------------------------- login_links


def logins_connection(rows: list[tuple]):
    """(store, day, ip, device, wifi) -> a connection with a typed-like ``logins`` table."""
    frame = pd.DataFrame(rows, columns=["store_id", "day", "ip", "device_id", "wifi_id"])
    frame["logged_at"] = [day(d) for d in frame.pop("day")]
    con = connect()
    con.register("logins_df", frame)
    con.execute(
        "CREATE TABLE logins AS SELECT store_id, CAST(logged_at AS TIMESTAMP) AS logged_at, "
        "ip, device_id, wifi_id FROM logins_df"
    )
    return con


def _or_none(value):
    return None if pd.isna(value) else value


def link_rows(links: pd.DataFrame) -> set[tuple]:
    return {
        (
            r.store_id,
            r.linked_store_id,
            r.kind,
            r.linked_at,
            None if pd.isna(r.unlinked_at) else r.unlinked_at,
        )
        for r in links.itertuples()
    }


def test_login_links_pairs_and_times():
    con = logins_connection(
        [
            ("A", 1, "ip1", "d1", None),
            ("A", 5, "ip9", "d1", "w1"),
            ("B", 3, "ip2", "d1", "w1"),
            ("C", 4, "ip3", "d3", None),
        ]
    )
    links = login_links(con)
    assert link_rows(links) == {
        ("A", "B", "device", day(3), None),
        ("B", "A", "device", day(3), None),
        ("A", "B", "wifi", day(5), None),
        ("B", "A", "wifi", day(5), None),
    }


def test_ip_over_cap_is_unlinked_from_the_first_use_past_the_cap():
    # ip1 used by A (day 1), B (day 2), C (day 3), then D (day 4) pushes it past cap 3.
    con = logins_connection(
        [
            ("A", 1, "ip1", "dA", None),
            ("B", 2, "ip1", "dB", None),
            ("C", 3, "ip1", "dC", None),
            ("D", 4, "ip1", "dD", None),
            ("E", 1, "ip2", "dE", None),
            ("F", 2, "ip2", "dF", None),
        ]
    )
    links = login_links(con, {"ip": 3})
    ab = links[(links.store_id == "A") & (links.linked_store_id == "B")]
    assert ab["linked_at"].tolist() == [day(2)] and ab["unlinked_at"].tolist() == [day(4)]
    assert not (links.store_id == "D").any()  # D is past the cap: never linked
    assert link_rows(links[links.store_id == "E"]) == {("E", "F", "ip", day(2), None)}

    features = pd.DataFrame({"store_id": "A", "as_of": [day(3.5), day(4), day(4.5)]})
    out, _ = add_link_features(features, links)
    assert out["link_ip_stores"].tolist() == [2, 2, 0]


def test_login_links_merges_intervals_and_keeps_gaps():
    # A and B share ipX (closed by C on day 3, cap 2) and later ipY from day 6: linked on
    # (2, 3] and from 6 on, not in between.
    con = logins_connection(
        [
            ("A", 1, "ipX", "dA", None),
            ("B", 2, "ipX", "dB", None),
            ("C", 3, "ipX", "dC", None),
            ("A", 5, "ipY", "dA", None),
            ("B", 6, "ipY", "dB", None),
        ]
    )
    links = login_links(con, {"ip": 2})
    ab = links[(links.store_id == "A") & (links.linked_store_id == "B")]
    assert ab["linked_at"].tolist() == [day(2), day(6)]
    assert ab["unlinked_at"].isna().tolist() == [False, True]
    features = pd.DataFrame({"store_id": "A", "as_of": [day(2.5), day(4), day(7)]})
    out, _ = add_link_features(features, links)
    assert out["link_ip_stores"].tolist() == [1, 0, 1]


def test_logins_after_as_of_change_no_link_feature():
    base = [
        ("A", 1, "ip1", "d1", "w1"),
        ("B", 2, "ip1", "d1", None),
        ("C", 3, "ip1", "d2", "w1"),
        ("D", 4, "ip2", "d2", None),
    ]
    late = [
        ("E", 10, "ip1", "d1", "w1"),
        ("F", 11, "ip1", "d2", None),
        ("D", 12, "ip1", "d1", None),
    ]
    features = pd.DataFrame({"store_id": list("ABCD"), "as_of": day(10)})
    labels = labels_frame([("B", 1, 5)])
    caps = {"ip": 3, "device": 2}
    before, _ = add_link_features(features, login_links(logins_connection(base), caps), labels)
    after, _ = add_link_features(
        features, login_links(logins_connection(base + late), caps), labels
    )
    pd.testing.assert_frame_equal(before, after)


def test_login_links_rejects_bad_caps_and_missing_view():
    con = logins_connection([("A", 1, "ip1", "d1", None)])
    with pytest.raises(LinkGraphError, match="unknown kind"):
        login_links(con, {"phone": 3})
    with pytest.raises(LinkGraphError, match=">= 2"):
        login_links(con, {"ip": 1})
    with pytest.raises(LinkGraphError, match="logins"):
        login_links(connect())


def test_unique_ints_matches_numpy_unique():

    rng = np.random.default_rng(4)
    arrays = [
        np.array([], np.int64),
        np.array([7]),
        rng.integers(0, 5, 200),
        rng.integers(-(1 << 40), 1 << 40, 5000),
    ]
    for values in arrays:
        got = unique_ints(values)
        assert np.array_equal(got, np.unique(values))
        assert got.dtype == values.dtype


def _graph_inputs():
    features = pd.DataFrame(
        {
            "store_id": ["A", "B", "C", "D"],
            "as_of": [day(10)] * 4,
            "gmv": [1.0, 2.0, 3.0, 4.0],
        }
    )
    labels = labels_frame([("C", 1, 5), ("D", 0, 6)])
    return features, labels


def test_graph_part_computed_ahead_gives_the_same_table():
    features, labels = _graph_inputs()
    direct, spec = add_link_features(features, RING, labels, neighbour_columns=["gmv"])
    part = link_graph_part(features[["store_id", "as_of"]], RING, labels)
    ahead, spec_ahead = add_link_features(
        features, RING, labels, neighbour_columns=["gmv"], graph_part=part
    )
    pd.testing.assert_frame_equal(ahead, direct)
    assert spec_ahead == spec
    assert at(direct, "A", "link_linked_stores") == 2
    assert at(direct, "A", "link_known_counterfeit") == 1


def test_graph_part_is_used_for_equal_inputs_and_refused_for_others():
    features, labels = _graph_inputs()
    part = link_graph_part(features[["store_id", "as_of"]], RING, labels)
    # Mark the part so that using it shows in the output.
    part.values["link_linked_stores"] = np.array([99, 99, 99, 99])

    def linked_of_a(frame, links, labels_, prefix="link_"):
        out, _ = add_link_features(
            frame, links, labels_, neighbour_columns=[], prefix=prefix, graph_part=part
        )
        return at(out, "A", f"{prefix}linked_stores")

    assert linked_of_a(features, RING, labels) == 99  # the same inputs: reused
    # Copies are equal inputs: a copied frame must not trigger a recompute.
    assert linked_of_a(features.copy(), RING.copy(), labels.copy()) == 99
    refused = {
        "other stores or another row order": (
            features.iloc[::-1].reset_index(drop=True), RING, labels, "link_"
        ),
        "other links": (features, RING.iloc[:-2], labels, "link_"),
        "other labels": (features, RING, labels.iloc[:1], "link_"),
        "other as-of times": (features.assign(as_of=day(11)), RING, labels, "link_"),
        "other options": (features, RING, labels, "g_"),
    }  # fmt: skip
    for reason, (frame, links, labels_, prefix) in refused.items():
        with pytest.raises(LinkGraphError, match=f"graph_part does not fit.*{reason}"):
            linked_of_a(frame, links, labels_, prefix)
