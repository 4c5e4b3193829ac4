"""``spotcheck promote``: gates, aliases and decision tags on both versions."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from training.settings import EXIT_REJECTED


@pytest.fixture
def client(mlflow_uri: str) -> MlflowClient:
    return MlflowClient(mlflow_uri, mlflow_uri)


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def _tags(client: MlflowClient, name: str, version: int) -> dict[str, str]:
    return client.get_model_version(name, str(version)).tags


def _train(cli, features, labels, storage, seed: int = 3) -> None:
    result = cli(
        "train", "--features", features, "--labels", labels, "--trials", 2, "--seed", seed,
        "--storage", f"sqlite:///{storage}",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr


def _noisy_early_labels(labels_path, out_path) -> None:
    """Flip 45% of the labels outside the most recent fifth: same holdout, worse training."""
    labels = pd.read_parquet(labels_path)
    early = labels["labeled_at"] < labels["labeled_at"].quantile(0.75)
    flip = early & (pd.Series(range(len(labels))).mod(20) < 9).to_numpy()
    labels.loc[flip, "is_counterfeit"] = 1 - labels.loc[flip, "is_counterfeit"]
    labels.to_parquet(out_path)


def test_champion_challenger_lifecycle(own_data, tracking, cli, client, tmp_path, monkeypatch):
    name = tracking.model_name
    _train(cli, own_data.features, own_data.labels, tmp_path / "a.db")

    # The first model beats both baselines: it becomes champion.
    first = cli("promote")
    assert first.exit_code == 0, first.stderr
    assert "promoted" in first.stdout
    assert _aliases(client, name) == {"champion": "1"}
    tags = _tags(client, name, 1)
    assert tags["promotion.decision"] == "promoted"
    assert float(tags["promotion.challenger_pr_auc"]) > float(
        tags["promotion.baseline_logistic_regression_pr_auc"]
    )
    assert float(tags["promotion.challenger_pr_auc"]) > float(
        tags["promotion.baseline_price_rule_pr_auc"]
    )

    # A challenger trained on noisy labels is worse on its own (clean, recent) holdout.
    noisy = tmp_path / "noisy_labels.parquet"
    _noisy_early_labels(own_data.labels, noisy)
    _train(cli, own_data.features, noisy, tmp_path / "b.db")
    worse = cli("promote")
    assert worse.exit_code == EXIT_REJECTED, worse.stderr
    assert "rejected" in worse.stdout and "lower" in worse.stdout
    assert _aliases(client, name) == {"champion": "1", "challenger": "2"}
    for version, role, other in ((2, "challenger", "1"), (1, "champion", "2")):
        tags = _tags(client, name, version)
        assert tags["promotion.decision"] == "rejected"
        assert tags["promotion.role"] == role and tags["promotion.compared_version"] == other
        assert float(tags["promotion.challenger_pr_auc"]) < float(tags["promotion.champion_pr_auc"])
        assert "lower" in tags["promotion.reason"] and tags["promotion.timestamp"]
    assert client.get_model_version(name, "2").status == "READY"  # still registered

    # A retrain identical to the champion ties on PR-AUC; it passes unless calibration fails.
    _train(cli, own_data.features, own_data.labels, tmp_path / "c.db")
    monkeypatch.setenv("SPOTCHECK_ECE_THRESHOLD", "0.000000001")
    strict = cli("promote")
    assert strict.exit_code == EXIT_REJECTED
    assert "calibration error" in strict.stdout
    assert _aliases(client, name)["champion"] == "1"
    monkeypatch.delenv("SPOTCHECK_ECE_THRESHOLD")
    equal = cli("promote")
    assert equal.exit_code == 0, equal.stdout + equal.stderr
    assert _aliases(client, name) == {"champion": "3"}
    tags = _tags(client, name, 3)
    assert tags["promotion.decision"] == "promoted"
    assert tags["promotion.challenger_pr_auc"] == tags["promotion.champion_pr_auc"]
    assert _tags(client, name, 1)["promotion.decision"] == "promoted"  # the decision it lost


def test_first_model_that_does_not_beat_the_price_rule_stays_challenger(
    make_data, tracking, cli, client, tmp_path
):
    data = make_data(tmp_path / "data", n_stores=2000, seed=5)
    features = pd.read_parquet(data.features)
    labels = pd.read_parquet(data.labels)
    # Labels that the price rule ranks perfectly: nothing can beat a PR-AUC of 1.
    cheap = features.set_index("store_id")["price_to_reference_median"] < 0.6
    labels["is_counterfeit"] = cheap.reindex(labels["store_id"]).to_numpy().astype("int64")
    labels.to_parquet(data.labels)
    _train(cli, data.features, data.labels, tmp_path / "a.db")
    result = cli("promote", "--model-name", tracking.model_name)
    assert result.exit_code == EXIT_REJECTED
    assert "does not beat the baselines" in result.stdout
    assert _aliases(client, tracking.model_name) == {"challenger": "1"}
    tags = _tags(client, tracking.model_name, 1)
    assert tags["promotion.decision"] == "rejected"
    assert float(tags["promotion.baseline_price_rule_pr_auc"]) == 1.0


def test_promote_without_a_challenger_is_an_error(tracking, cli):
    result = cli("promote", "--model-name", "no-such-model")
    assert result.exit_code == 1
    assert "no registered model" in result.stderr
