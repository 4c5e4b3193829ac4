"""The spot-check loop replayed: estimators with known answers, no future information, a run."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from loop import LoopError
from loop.backtest import (
    BacktestPlan,
    month_starts,
    policy_ratios,
    rule_picks,
    run_backtest,
    selection_bias,
)


def _marketplace(population: int = 2000) -> pd.DataFrame:
    """Scored stores, riskiest first; the truth leans to the top but is spread everywhere."""
    rng = np.random.default_rng(0)
    score = np.sort(rng.beta(0.3, 6, population))[::-1]
    return pd.DataFrame({
        "store_id": [f"s{i:04d}" for i in range(population)], "score": score,
        "rank": np.arange(1, population + 1), "reason_1": "", "reason_2": "", "reason_3": "",
        "reasons": "[]", "mitigating": "[]",
        "truly_counterfeit": (rng.random(population) < np.clip(score * 1.1, 0.02, 1)).astype(int),
    })  # fmt: skip


def _a_month_of_the_queue(stores: pd.DataFrame, seed: int, design: str) -> pd.DataFrame:
    """The model policy's buys of one month through the real queue, labels = truth."""
    from serving.queue import QueuePlan, build_queue, ring_ids

    no_links = pd.DataFrame(columns=["store_id", "linked_store_id"])
    rings = ring_ids(stores["store_id"], no_links, 30)
    plan = QueuePlan(budget=50, explore=0.1, seed=seed, explore_design=design)
    queue = build_queue(stores.drop(columns="truly_counterfeit"), rings, None, plan)
    truth = stores.set_index("store_id")["truly_counterfeit"]
    picks = queue.picks[["store_id", "selection", "selection_probability", "stratum"]]
    picks = picks.assign(
        month=0, policy="model", explore_design=design,
        truly_counterfeit=picks["store_id"].map(truth).to_numpy(),
        in_budget_edge=picks["store_id"].isin(queue.budget_edge), candidates=len(stores),
        candidates_counterfeit=int(truth.sum()), budget_edge_size=len(queue.budget_edge),
        budget_edge_counterfeit=int(truth[list(queue.budget_edge)].sum()),
    )  # fmt: skip
    return picks.assign(is_counterfeit=picks["truly_counterfeit"])


@pytest.mark.parametrize("design", ["stratified", "uniform"])
def test_the_exploration_estimate_recovers_the_truth_the_own_picks_do_not(design):
    stores = _marketplace()
    draws = 400
    estimates = pd.concat(
        [selection_bias(_a_month_of_the_queue(stores, seed, design)) for seed in range(draws)]
    )
    precision, prevalence = estimates["precision_truth"], estimates["prevalence_truth"]
    assert precision.nunique() == 1 and prevalence.nunique() == 1
    # Horvitz-Thompson is unbiased: the mean of many draws sits on the truth (within four
    # standard errors of that mean)...
    for figure in ("precision", "prevalence"):
        ipw = estimates[f"{figure}_ipw"]
        assert abs(ipw.mean() - estimates[f"{figure}_truth"].iloc[0]) < 4 * ipw.std() / draws**0.5
    # ...while the bought stores alone say most stores sell fakes and the model finds them all.
    assert estimates["prevalence_own_picks"].mean() > 3 * prevalence.iloc[0]
    assert estimates["recall_own_picks"].mean() > 2 * estimates["recall_truth"].iloc[0]
    width = (estimates["precision_ipw_high"] - estimates["precision_ipw_low"]).mean()
    covered = (estimates["precision_ipw_low"] <= precision) & (
        precision <= estimates["precision_ipw_high"]
    )
    assert covered.mean() > 0.85  # an approximate interval: 2 draws of 5 in the edge
    if design == "stratified":
        # Two of the five exploration buys on the budget edge: one month's estimate of the
        # precision at the budget is within 0.05 of the truth nearly always.
        error = (estimates["precision_ipw"] - precision).abs()
        assert (error <= 0.05).mean() > 0.85 and width < 0.15
    else:
        # A uniform draw almost never reaches the edge: the interval stays three times wider.
        assert width > 0.45


def test_policy_ratios_and_their_interval():
    picks = pd.DataFrame({
        "policy": ["model"] * 40 + ["random"] * 40, "month": ([0] * 20 + [1] * 20) * 2,
        "truly_counterfeit": [1] * 20 + [1] * 12 + [0] * 8 + [1] * 20 + [1] * 3 + [0] * 17,
    })  # fmt: skip
    ratios = policy_ratios(picks, from_month=1, seed=1)
    row = ratios.set_index("policy").loc["random"]
    assert (row["model_found"], row["found"], row["ratio"]) == (12, 3, 4.0)
    assert 1.0 < row["ci_low"] < 4.0 < row["ci_high"]


def test_rule_ties_are_broken_at_random_not_by_store_id():
    pool = pd.DataFrame({"store_id": [f"s{i:03d}" for i in range(100)]})
    flat = np.zeros(100)
    a = rule_picks(flat, pool, 10, np.random.default_rng(1))["store_id"].tolist()
    b = rule_picks(flat, pool, 10, np.random.default_rng(2))["store_id"].tolist()
    assert a != b and a != sorted(pool["store_id"])[:10]
    scores = np.arange(100.0)
    top = rule_picks(scores, pool, 3, np.random.default_rng(1))["store_id"].tolist()
    assert top == ["s099", "s098", "s097"]


def test_a_bad_plan_is_refused_by_name():
    with pytest.raises(LoopError, match="unknown policy oracle"):
        BacktestPlan(months=2, budget=5, policies=("model", "oracle"))
    with pytest.raises(LoopError, match="retrain must be monthly or never"):
        BacktestPlan(months=2, budget=5, retrain="weekly")


def test_months_are_the_last_whole_months_before_the_end():
    starts = month_starts(pd.Timestamp("2026-06-30 23:00"), 3)
    assert [str(s.date()) for s in starts] == [
        "2026-03-01", "2026-04-01", "2026-05-01", "2026-06-01",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def market(tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("backtest") / "market"
    made = cli("synth", "--stores", 2500, "--seed", 5, "--out", out)
    assert made.exit_code == 0, made.stderr
    return out


def _alter_after(histories, out, cutoff: pd.Timestamp) -> None:
    """A copy of ``histories`` whose every event and label after ``cutoff`` is changed."""
    shutil.copytree(histories, out)
    for table, column in (("orders", "ordered_at"), ("reviews", "created_at"),
                          ("disputes", "opened_at"), ("labels", "labeled_at")):  # fmt: skip
        frame = pd.read_parquet(out / f"{table}.parquet")
        late = pd.to_datetime(frame[column], utc=True) >= cutoff
        if table == "orders":
            frame.loc[late, "amount"] = frame.loc[late, "amount"] * 7 + 1
        elif table == "reviews":
            frame.loc[late, "rating"] = 6 - frame.loc[late, "rating"]
        elif table == "labels":
            frame.loc[late, "is_counterfeit"] = 1 - frame.loc[late, "is_counterfeit"]
        else:
            frame.loc[late, "reason"] = "counterfeit"
        frame.to_parquet(out / f"{table}.parquet", index=False)


@pytest.mark.slow
def test_a_tiny_backtest_end_to_end_and_no_pick_sees_the_future(market, cli, tracking, tmp_path):
    out = tmp_path / "bt"
    ran = cli(
        "backtest", "--histories", market, "--truth", market / "truth.parquet",
        "--months", 2, "--budget", 10, "--trials", 0, "--retrain", "never",
        "--policies", "model,rules,random", "--out", out, "--model-name", "t-backtest",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.stderr
    picks = pd.read_parquet(out / "picks.parquet")
    assert picks.groupby(["policy", "month"]).size().eq(10).all()
    assert set(picks["policy"]) == {"model", "rules", "random"}
    # Test-buys are labels dated within their month; nobody buys a store twice.
    summary = json.loads((out / "summary.json").read_text())
    starts = pd.to_datetime(summary["months"], utc=True)
    when = pd.to_datetime(picks["labeled_at"], utc=True).dt.tz_convert(None).to_numpy()
    naive = starts.tz_convert(None).to_numpy()
    assert (when >= naive[picks["month"]]).all() and (when < naive[picks["month"] + 1]).all()
    assert not picks.duplicated(["policy", "store_id"]).any()
    assert "<svg" in (out / "backtest.html").read_text()
    runs = mlflow.search_runs(search_all_experiments=True,
                              filter_string="tags.`spotcheck.kind` = 'backtest-month'")  # fmt: skip
    assert len(runs) == 2
    # The second month's drift from the first, with the month's model.
    (drift,) = summary["drift"]
    assert drift["month"] == 1 and drift["status"] in {"ok", "warn", "alert"}
    assert 0 <= drift["score_psi"] < 10 and drift["features_drifting"] >= 0
    assert runs["metrics.drift.score_psi"].notna().sum() == 1

    # Everything after the first month's start changed: its picks must not.
    altered = tmp_path / "altered"
    _alter_after(market, altered, starts[0])
    plan = BacktestPlan(months=2, budget=10, policies=("model", "rules", "random"), trials=0,
                        retrain="never", model_name="t-backtest-altered")  # fmt: skip
    again = run_backtest(altered, market / "truth.parquet", plan, tmp_path / "work")["picks"]
    assert again["month"].max() == 1  # the same two months
    first = ["policy", "store_id", "selection"]
    mine = picks[picks["month"] == 0][first].reset_index(drop=True)
    theirs = again[again["month"] == 0][first].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, theirs)
    # The second month's scores saw the altered month: they differ.
    late = picks[(picks["month"] == 1) & (picks["policy"] == "model")]["score"].to_numpy()
    late_again = again[(again["month"] == 1) & (again["policy"] == "model")]["score"].to_numpy()
    assert not np.allclose(np.sort(late), np.sort(late_again))


def test_reasons_gaining_and_losing_are_named_only_when_they_moved():
    from loop.backtest import _extreme

    still = pd.DataFrame({"change": [0.0, 0.0]}, index=["a", "b"])
    assert (_extreme(still, "idxmax"), _extreme(still, "idxmin")) == (None, None)
    moved = pd.DataFrame({"change": [0.1, -0.1, 0.0]}, index=["a", "b", "c"])
    assert (_extreme(moved, "idxmax"), _extreme(moved, "idxmin")) == ("a", "b")
    grew = pd.DataFrame({"change": [0.1, 0.0]}, index=["a", "b"])
    assert (_extreme(grew, "idxmax"), _extreme(grew, "idxmin")) == ("a", None)
