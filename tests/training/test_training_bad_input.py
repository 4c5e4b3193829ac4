"""Bad input: a clear error, a non-zero exit, nothing registered, no run left RUNNING."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient


@pytest.fixture
def client(mlflow_uri: str) -> MlflowClient:
    return MlflowClient(mlflow_uri, mlflow_uri)


def _registered(client: MlflowClient, name: str) -> list:
    return client.search_registered_models(filter_string=f"name = '{name}'")


def _write(frame: pd.DataFrame, path) -> str:
    frame.to_parquet(path, index=False)
    return str(path)


def _unknown_stores(features, labels):
    extra = pd.DataFrame(
        {"store_id": ["ghost-1", "ghost-2"], "is_counterfeit": [1, 0],
         "labeled_at": pd.Timestamp("2024-06-01")}
    )  # fmt: skip
    return features, pd.concat([labels, extra], ignore_index=True)


def _single_class(features, labels):
    return features, labels.assign(is_counterfeit=0)


def _few_positives(features, labels):
    positives = labels.index[labels["is_counterfeit"] == 1]
    return features, labels.drop(positives[4:])


def _no_store_id(features, labels):
    return features.rename(columns={"store_id": "shop"}), labels


def _duplicate_stores(features, labels):
    return pd.concat([features, features.head(3)], ignore_index=True), labels


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (_unknown_stores, ["2 labels for stores not in the features", "ghost-1"]),
        (_single_class, ["single class", "is_counterfeit=0"]),
        (_few_positives, ["found 4 positive", "at least 14", "cross-validation folds"]),
        (_no_store_id, ["no 'store_id' column"]),
        (_duplicate_stores, ["6 rows for 3 duplicated store_id"]),
    ],
    ids=["unknown-stores", "single-class", "few-positives", "no-store-id", "duplicates"],
)
def test_bad_input_fails_clearly_and_registers_nothing(
    corrupt, expected, own_data, tracking, cli, client, tmp_path
):
    features, labels = corrupt(pd.read_parquet(own_data.features), pd.read_parquet(own_data.labels))
    result = cli(
        "train", "--features", _write(features, tmp_path / "f.parquet"),
        "--labels", _write(labels, tmp_path / "l.parquet"), "--trials", 1,
        "--experiment", tracking.model_name,
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    for text in expected:
        assert text in result.stderr
    assert _registered(client, tracking.model_name) == []
    # Input is checked before the run starts: no run at all, so none left RUNNING.
    experiment = client.get_experiment_by_name(tracking.model_name)
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []


def test_unreachable_tracking_server_fails_before_reading_data(tracking, cli, monkeypatch):
    # Port 9 (discard) refuses connections; the features path does not even exist, so an
    # error about the tracking server proves it was checked before any data was read.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    result = cli("train", "--features", "missing.parquet", "--labels", "missing.parquet")
    assert result.exit_code == 1
    assert "http://127.0.0.1:9 is unreachable" in result.stderr


def test_failure_during_training_marks_the_run_failed(own_data, tracking, cli, client, monkeypatch):
    import training.tune

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while tuning")

    monkeypatch.setattr(training.tune, "tune", broken)
    result = cli(
        "train", "--features", own_data.features, "--labels", own_data.labels,
        "--experiment", tracking.model_name, "--trials", 2,
    )  # fmt: skip
    assert result.exit_code != 0
    assert isinstance(result.exception, RuntimeError)
    experiment = client.get_experiment_by_name(tracking.model_name)
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert _registered(client, tracking.model_name) == []


def test_features_without_labels_is_a_usage_error(own_data, tracking, cli):
    result = cli("train", "--features", own_data.features)
    assert result.exit_code == 2
    assert "--features needs --labels" in result.stderr
