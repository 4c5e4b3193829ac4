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


def _train(cli, features, labels, seed: int = 3) -> None:
    # No tuning: the default parameters, so equal data gives an identical model.
    result = cli("train", "--features", features, "--labels", labels, "--seed", seed)
    assert result.exit_code == 0, result.stderr


def _holdout_start(labels: pd.DataFrame) -> pd.Timestamp:
    """Where ``spotcheck train`` cuts its holdout: the most recent fifth of the labels."""
    times = labels["labeled_at"].sort_values(kind="stable").reset_index(drop=True)
    return times.iloc[int(len(times) * 0.8)]


def _noisy_early_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Flip 45% of the labels before the holdout: the same clean holdout, worse training."""
    early = (labels["labeled_at"] < _holdout_start(labels)).to_numpy()
    flip = early & (pd.Series(range(len(labels))).mod(20) < 9).to_numpy()
    out = labels.copy()
    out.loc[flip, "is_counterfeit"] = 1 - out.loc[flip, "is_counterfeit"]
    return out


def _interval(tags: dict[str, str], key: str) -> tuple[float, float, float]:
    return tuple(float(tags[f"promotion.{key}{end}"]) for end in ("", ".low", ".high"))


def test_champion_challenger_lifecycle(own_data, tracking, cli, client, tmp_path, monkeypatch):
    name = tracking.model_name
    labels = pd.read_parquet(own_data.labels)
    # The champion was trained before the most recent labels arrived: they are the
    # challengers' holdout, which the champion never saw.
    older = tmp_path / "older.parquet"
    labels[labels["labeled_at"] < _holdout_start(labels)].to_parquet(older)
    _train(cli, own_data.features, older)

    # The first model is non-inferior to both baselines: it becomes champion.
    first = cli("promote")
    assert first.exit_code == 0, first.stderr
    assert "promoted" in first.stdout and "non-inferior to the baselines" in first.stdout
    assert _aliases(client, name) == {"champion": "1"}
    tags = _tags(client, name, 1)
    assert tags["promotion.decision"] == "promoted"
    for baseline in ("logistic_regression", "price_rule"):
        estimate, low, high = _interval(tags, f"pr_auc_minus_{baseline}")
        assert low <= estimate <= high and low > -float(tags["promotion.pr_auc_margin"])
    assert tags["promotion.bootstrap_samples"] == "1000"

    # A challenger trained on noisy labels is worse on its clean, recent holdout.
    noisy = tmp_path / "noisy_labels.parquet"
    _noisy_early_labels(labels).to_parquet(noisy)
    _train(cli, own_data.features, noisy)
    worse = cli("promote")
    assert worse.exit_code == EXIT_REJECTED, worse.stderr
    assert "rejected" in worse.stdout and "lower than the champion" in worse.stdout
    assert _aliases(client, name) == {"champion": "1", "challenger": "2"}
    for version, role, other in ((2, "challenger", "1"), (1, "champion", "2")):
        tags = _tags(client, name, version)
        assert tags["promotion.decision"] == "rejected"
        assert tags["promotion.role"] == role and tags["promotion.compared_version"] == other
        assert float(tags["promotion.challenger_pr_auc"]) < float(tags["promotion.champion_pr_auc"])
        estimate, low, high = _interval(tags, "pr_auc_minus_champion")
        assert low <= estimate <= high and low < -float(tags["promotion.pr_auc_margin"])
        assert float(tags["promotion.compared_rows"]) == len(labels) - len(
            pd.read_parquet(older)
        )  # exactly the holdout rows the champion did not train on
        assert "lower" in tags["promotion.reason"] and tags["promotion.timestamp"]
    assert client.get_model_version(name, "2").status == "READY"  # still registered

    # A retrain on all labels: its holdout model is fit on the champion's very labels, so
    # the two tie exactly; it passes unless it is confidently miscalibrated.
    _train(cli, own_data.features, own_data.labels)
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
    assert _interval(tags, "pr_auc_minus_champion") == (0.0, 0.0, 0.0)
    assert _tags(client, name, 1)["promotion.decision"] == "promoted"  # the decision it lost


def test_a_first_model_worse_than_the_price_rule_stays_challenger(
    make_data, tracking, cli, client, tmp_path
):
    data = make_data(tmp_path / "data", n_stores=2000, seed=5)
    features = pd.read_parquet(data.features)
    labels = pd.read_parquet(data.labels)
    # Labels the price rule ranks perfectly; the model learns them from noisy early labels.
    cheap = features.set_index("store_id")["price_to_reference_median"] < 0.6
    labels["is_counterfeit"] = cheap.reindex(labels["store_id"]).to_numpy().astype("int64")
    _noisy_early_labels(labels).to_parquet(data.labels)
    _train(cli, data.features, data.labels)
    result = cli("promote", "--model-name", tracking.model_name)
    assert result.exit_code == EXIT_REJECTED
    assert "not shown non-inferior to the baselines" in result.stdout
    assert "price_rule" in result.stdout
    assert _aliases(client, tracking.model_name) == {"challenger": "1"}
    tags = _tags(client, tracking.model_name, 1)
    assert tags["promotion.decision"] == "rejected"
    assert float(tags["promotion.baseline_price_rule_pr_auc"]) == 1.0
    assert float(tags["promotion.pr_auc_minus_price_rule.high"]) < 0


def test_promote_without_a_challenger_is_an_error(tracking, cli):
    result = cli("promote", "--model-name", "no-such-model")
    assert result.exit_code == 1
    assert "no registered model" in result.stderr
