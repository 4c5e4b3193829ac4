"""``spotcheck queue``: the stores to test-buy next, rings grouped, exploration recorded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serving import ServingError
from serving.queue import (
    EXPLORE_PICK,
    MODEL_PICK,
    QueuePlan,
    build_queue,
    current_links,
    inclusion_probabilities,
    queue_html,
    ring_ids,
)


def _scored(n: int = 40) -> pd.DataFrame:
    """Ranked stores s00 (riskiest) .. s39 with one reason each."""
    scores = np.linspace(0.99, 0.01, n)
    return pd.DataFrame(
        {
            "store_id": [f"s{i:02d}" for i in range(n)],
            "score": scores,
            "rank": range(1, n + 1),
            "reason_1": "r",
            "reason_2": "",
            "reason_3": "",
            "reasons": json.dumps([{"text": "sells <cheap> fakes"}]),
            "mitigating": "[]",
        }
    )


def _links(*pairs: tuple[str, str]) -> pd.DataFrame:
    a, b = zip(*pairs, strict=True)
    return pd.DataFrame({"store_id": a, "linked_store_id": b})


def test_rings_are_small_components_named_after_their_smallest_store():
    stores = pd.Series([f"s{i:02d}" for i in range(10)])
    links = _links(("s01", "s02"), ("s02", "s05"), ("s06", "s07"), ("s07", "s08"),
                   ("s08", "s09"), ("s03", "x-unknown"))  # fmt: skip
    rings = ring_ids(stores, links, max_ring_size=3).set_index("store_id")
    assert rings.loc["s05", "ring_id"] == "ring-s01" and rings.loc["s05", "ring_size"] == 3
    # A component of 4 is past the cap of 3: a chain, not a ring.
    assert rings.loc[["s06", "s09"], "ring_id"].isna().all()
    assert pd.isna(rings.loc["s03", "ring_id"]) and rings.loc["s03", "ring_size"] == 1


def test_only_links_valid_at_the_time_count():
    links = pd.DataFrame(
        {
            "store_id": ["a", "b", "c"],
            "linked_store_id": ["b", "c", "d"],
            "linked_at": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-06-01"]),
            "unlinked_at": pd.to_datetime(["2025-03-01", None, None]),
        }
    )
    valid = current_links(links, pd.Timestamp("2025-04-01"))
    assert valid["store_id"].tolist() == ["b"]


def test_one_pick_per_ring_labelled_stores_left_out():
    scored = _scored()
    links = _links(("s00", "s01"), ("s01", "s02"), ("s04", "s05"))
    rings = ring_ids(scored["store_id"], links, 30)
    labels = pd.DataFrame({"store_id": ["s03"], "is_counterfeit": [1]})
    queue = build_queue(scored, rings, labels, QueuePlan(budget=5))
    # s01, s02 share s00's ring, s03 is labelled, s05 shares s04's ring.
    assert queue.picks["store_id"].tolist() == ["s00", "s04", "s06", "s07", "s08"]
    assert queue.picks["pick"].tolist() == [1, 2, 3, 4, 5]
    assert set(queue.picks["selection"]) == {MODEL_PICK}
    assert (queue.picks["selection_probability"] == 1.0).all()
    assert queue.labelled_left_out == 1 and queue.eligible == 39
    assert queue.expected_counterfeit == pytest.approx(queue.picks["score"].sum())
    rings_out = queue.rings.set_index("ring_id")
    expected = scored.set_index("store_id").loc[["s00", "s01", "s02"], "score"].sum()
    assert rings_out.loc["ring-s00", "expected_counterfeit"] == pytest.approx(expected)
    assert rings_out.loc["ring-s00", "picked"] == 1 and rings_out.loc["ring-s00", "ring_size"] == 3
    two = build_queue(scored, rings, labels, QueuePlan(budget=5, per_ring=2))
    assert two.picks["store_id"].tolist() == ["s00", "s01", "s04", "s05", "s06"]


def test_known_counterfeit_members_are_counted_per_ring():
    scored = _scored()
    rings = ring_ids(scored["store_id"], _links(("s00", "s09"), ("s09", "s10")), 30)
    labels = pd.DataFrame(
        {
            "store_id": ["s09", "s10", "s10"],
            "is_counterfeit": [1, 1, 0],
            "labeled_at": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-02-01"]),
        }
    )
    queue = build_queue(scored, rings, labels, QueuePlan(budget=3))
    # s10's latest label says genuine.
    assert queue.rings.set_index("ring_id").loc["ring-s00", "known_counterfeit"] == 1


def test_uniform_exploration_draws_with_recorded_probabilities():
    scored = _scored()
    rings = ring_ids(scored["store_id"], _links(("s00", "s01")), 30)
    labels = pd.DataFrame({"store_id": ["s30"], "is_counterfeit": [0]})
    plan = QueuePlan(budget=10, explore=0.3, seed=4, explore_design="uniform")
    queue = build_queue(scored, rings, labels, plan)
    model = queue.picks[queue.picks["selection"] == MODEL_PICK]
    explored = queue.picks[queue.picks["selection"] == EXPLORE_PICK]
    assert len(model) == 7 and len(explored) == 3
    # Drawn from the 39 unlabelled stores minus the 7 model picks.
    assert explored["selection_probability"].tolist() == pytest.approx([3 / 32] * 3)
    assert not set(explored["store_id"]) & (set(model["store_id"]) | {"s30"})
    again = build_queue(scored, rings, labels, plan)
    assert again.picks["store_id"].tolist() == queue.picks["store_id"].tolist()
    draws = {
        tuple(build_queue(scored, rings, labels, QueuePlan(10, explore=0.3, seed=s,
                                                           explore_design="uniform")).picks[
            "store_id"
        ][7:])
        for s in range(20)
    }  # fmt: skip
    assert len(draws) > 10  # the seed decides, the draw varies
    # Inclusion frequency matches the recorded probability (a seeded simulation).
    hits = sum(
        "s39" in build_queue(scored, rings, labels, QueuePlan(10, explore=0.3, seed=s,
                                                              explore_design="uniform")).picks[
            "store_id"
        ].tolist()
        for s in range(800)
    )  # fmt: skip
    assert hits / 800 == pytest.approx(3 / 32, abs=0.03)


def test_stratified_exploration_samples_the_budget_edge_and_weighs_the_rest_by_score():
    scored = _scored()
    rings = ring_ids(scored["store_id"], _links(("s00", "s01")), 30)
    plan = QueuePlan(budget=10, explore=0.4, seed=3)  # 6 certain picks, 4 explored
    queue = build_queue(scored, rings, None, plan)
    picks = queue.picks.set_index("store_id")
    # The whole budget skips s01 (ring of s00): s00, s02..s10; the last 4 are the edge.
    assert queue.budget_edge == ("s07", "s08", "s09", "s10")
    assert picks.index[:6].tolist() == ["s00", "s02", "s03", "s04", "s05", "s06"]
    edge = picks[picks["stratum"] == "edge"]
    rest = picks[picks["stratum"] == "rest"]
    assert len(edge) == 2 and set(edge.index) <= set(queue.budget_edge)
    assert edge["selection_probability"].tolist() == pytest.approx([0.5, 0.5])
    assert len(rest) == 2 and not set(rest.index) & set(queue.budget_edge)
    # Inclusion frequencies over many seeds match the recorded probabilities, every store
    # outside the certain picks has a chance above zero, and riskier stores a larger one.
    counts: dict[str, int] = {}
    recorded: dict[str, float] = {}
    runs = 700
    for seed in range(runs):
        drawn = build_queue(scored, rings, None, QueuePlan(10, explore=0.4, seed=seed)).picks
        for row in drawn[drawn["selection"] == EXPLORE_PICK].itertuples():
            counts[row.store_id] = counts.get(row.store_id, 0) + 1
            recorded[row.store_id] = row.selection_probability
    outside = {f"s{i:02d}" for i in range(40)} - set(picks.index[:6])
    assert set(counts) == outside
    for store, count in counts.items():
        # Within four binomial standard deviations of the recorded probability.
        p = recorded[store]
        assert abs(count / runs - p) <= 4 * (p * (1 - p) / runs) ** 0.5, store
    assert recorded["s11"] > 2 * recorded["s39"] > 0


def test_inclusion_probabilities_sum_to_the_draws_and_cap_at_one():
    probability = inclusion_probabilities(np.array([100.0, 1.0, 1.0, 1.0, 1.0]), 2)
    assert probability.sum() == pytest.approx(2.0)
    assert probability.tolist() == pytest.approx([1.0, 0.25, 0.25, 0.25, 0.25])


@pytest.mark.parametrize(
    "plan, named",
    [
        ({"budget": 0}, "budget"),
        ({"budget": 5, "per_ring": 0}, "per-ring"),
        ({"budget": 5, "explore": 1.5}, "explore"),
        ({"budget": 5, "max_ring_size": 1}, "max ring size"),
    ],
)
def test_a_bad_plan_is_refused_by_name(plan, named):
    with pytest.raises(ServingError, match=named):
        QueuePlan(**plan)


def test_the_page_is_self_contained_and_escapes_text():
    scored = _scored()
    queue = build_queue(scored, ring_ids(scored["store_id"], _links(("s00", "s01")), 30), None,
                        QueuePlan(budget=4, explore=0.25))  # fmt: skip
    page = queue_html(queue, "Queue <test>")
    assert "<script" not in page and "http" not in page
    assert "&lt;cheap&gt;" in page and "<cheap>" not in page
    assert "Expected counterfeit stores found" in page and "ring-s00" in page


def test_cli_writes_queue_rings_and_page(byo_model, cli, tmp_path):
    data = byo_model.data
    out = tmp_path / "queue"
    result = cli(
        "queue", "--features", data.features, "--links", data.links, "--labels", data.labels,
        "--model", f"models:/{byo_model.model_name}/1", "--budget", 12, "--explore", 0.25,
        "--out", out, "--format", "csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["queue.csv", "queue.html", "rings.csv"]
    picks = pd.read_csv(out / "queue.csv")
    assert len(picks) == 12 and (picks["selection"] == EXPLORE_PICK).sum() == 3
    labelled = set(pd.read_parquet(data.labels)["store_id"].astype(str))
    assert not set(picks["store_id"].astype(str)) & labelled
    model_picks = picks[picks["selection"] == MODEL_PICK]
    assert model_picks["rank"].is_monotonic_increasing
    ringed = model_picks["ring_id"].dropna()
    assert ringed.is_unique  # one pick per ring by default
    assert "expected counterfeit found" in result.stderr


@pytest.mark.parametrize(
    "extra, code",
    [
        (["--budget", "0"], 2),
        (["--budget", "5", "--explore", "1.5"], 2),
        (["--budget", "5", "--format", "xlsx"], 2),
        (["--budget", "5", "--histories", "somewhere"], 2),
    ],
)
def test_cli_bad_options_exit_2_and_write_nothing(byo_model, cli, tmp_path, extra, code):
    out = tmp_path / "queue"
    result = cli(
        "queue", "--features", byo_model.data.features, "--model",
        f"models:/{byo_model.model_name}/1", "--out", out, *extra,
    )  # fmt: skip
    assert result.exit_code == code, result.stderr
    assert not out.exists()


def test_cli_unknown_model_exits_1_and_writes_nothing(byo_model, cli, tmp_path):
    out = tmp_path / "queue"
    result = cli(
        "queue", "--features", byo_model.data.features, "--model", "models:/no-such-model/1",
        "--budget", 5, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 1 and "no-such-model" in result.stderr
    assert not out.exists()
