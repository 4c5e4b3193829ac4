"""Training and scoring from a store-histories directory (a small synthetic marketplace)."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_histories_train_register_and_score_every_store(tracking, cli, tmp_path, mlflow_uri):
    histories = tmp_path / "market"
    made = cli("synth", "--stores", 4000, "--seed", 5, "--out", histories)
    assert made.exit_code == 0, made.stderr
    truth_file = histories / "truth.parquet"
    trained = cli(
        "train", "--histories", histories, "--trials", 2, "--seed", 1, "--json",
        "--truth", truth_file,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    summary = json.loads(trained.stdout)
    # Against the truth: every store not labelled before the test period, all three scorers.
    truth_metrics = summary["truth_metrics"]
    assert set(truth_metrics) == {"model", "price_rule", "logistic_regression"}
    model = truth_metrics["model"]
    truth = pd.read_parquet(truth_file)
    assert 0.5 * len(truth) < model["rows"] < len(truth)
    assert model["pr_auc"] > truth_metrics["price_rule"]["pr_auc"]
    assert 0 <= model["precision_at_100"] <= 1 and "ece" in model
    assert model["true_rate"] == pytest.approx(model["positives"] / model["rows"])
    assert summary["model_uri"] == f"models:/{tracking.model_name}/1"
    assert summary["split"]["split_method"] == "time"
    assert set(summary["holdout_metrics"]) == {"model", "price_rule", "logistic_regression"}
    client = MlflowClient(mlflow_uri)
    run = client.get_run(summary["run_id"])
    assert run.data.tags["data.source"].endswith("market")
    spec = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/feature_spec.json"))
    names = [f["name"] for f in spec["features"]]
    assert "price_to_reference_median" in names and "link_known_counterfeit" in names

    out = tmp_path / "scores.parquet"
    scored = cli("score", "--histories", histories, "--model", summary["model_uri"], "--out", out)
    assert scored.exit_code == 0, scored.stderr
    scores = pd.read_parquet(out)
    stores = pd.read_parquet(histories / "stores.parquet")
    assert sorted(scores["store_id"]) == sorted(stores["store_id"])
    assert scores["rank"].tolist() == list(range(1, len(stores) + 1))
    assert (scores.head(20)["reason_1"].str.len() > 0).all()
    # The scores find the synthetic counterfeiters far above their base rate.
    truth = pd.read_parquet(histories / "truth.parquet")
    top = scores.head(len(stores) // 50).merge(truth, on="store_id")
    assert top["is_counterfeit"].mean() > 3 * truth["is_counterfeit"].mean()

    # Plain MLflow takes the table `spotcheck features` writes as it is (int64, bool, str
    # columns included) and gives the scores `spotcheck score` wrote.
    table_path = tmp_path / "features.parquet"
    built = cli("features", "--histories", histories, "--out", table_path)
    assert built.exit_code == 0, built.stderr
    table = pd.read_parquet(table_path)
    assert {"int64", "bool", "str"} <= {str(t) for t in table.dtypes}
    plain = mlflow.pyfunc.load_model(summary["model_uri"]).predict(table)
    by_store = scores.set_index("store_id")
    assert plain["score"].to_numpy() == pytest.approx(
        by_store.loc[table["store_id"], "score"].to_numpy(), abs=0
    )
    assert plain["reason_1"].tolist() == by_store.loc[table["store_id"], "reason_1"].tolist()


@pytest.mark.slow
def test_the_truth_is_for_evaluation_only(tracking, cli, tmp_path):
    """Training with and without --truth gives the same model, and the same holdout figures."""
    histories = tmp_path / "market"
    assert cli("synth", "--stores", 2500, "--seed", 9, "--out", histories).exit_code == 0
    summaries = []
    for extra in ([], ["--truth", histories / "truth.parquet"]):
        trained = cli("train", "--histories", histories, "--seed", 2, "--json", *extra)
        assert trained.exit_code == 0, trained.stderr
        summaries.append(json.loads(trained.stdout))
    assert summaries[0]["truth_metrics"] is None and summaries[1]["truth_metrics"]
    assert summaries[0]["holdout_metrics"] == summaries[1]["holdout_metrics"]
    boosters = [
        mlflow.pyfunc.load_model(s["model_uri"]).unwrap_python_model().booster_ for s in summaries
    ]
    assert boosters[0].model_to_string() == boosters[1].model_to_string()
    with_own = cli(
        "train", "--features", histories / "stores.parquet", "--labels",
        histories / "labels.parquet", "--truth", histories / "truth.parquet",
    )  # fmt: skip
    assert with_own.exit_code == 1 and "give it with histories" in with_own.stderr
