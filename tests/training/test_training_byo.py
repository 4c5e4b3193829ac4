"""Training on a team's own feature, label and link files, end to end through the CLI."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from training.settings import load_settings

SHARE_BUDGETS = ("precision_at_0.5pct", "precision_at_1pct", "precision_at_2pct")


@pytest.fixture
def client(mlflow_uri: str) -> MlflowClient:
    return MlflowClient(mlflow_uri, mlflow_uri)


def test_json_summary_names_run_version_and_holdout_metrics(byo_model):
    summary = byo_model.summary
    assert summary["model_uri"] == f"models:/{byo_model.model_name}/1"
    assert summary["version"] == "1" and summary["alias"] == "challenger"
    metrics = summary["holdout_metrics"]
    assert set(metrics) == {"model", "price_rule", "logistic_regression"}
    for scorer in metrics.values():
        assert 0.5 < scorer["roc_auc"] <= 1 and 0 < scorer["pr_auc"] <= 1
        assert "precision_at_budget" in scorer
        # A 420-row holdout: 0.5-2% budgets are 3-9 stores, too few to report.
        assert not any(name in scorer for name in SHARE_BUDGETS)
    assert {"brier", "ece"} <= set(metrics["model"])
    # The generator's signal is thresholds and interactions: the tuned trees must win.
    assert summary["beats_baselines"] is True
    assert summary["split"]["split_method"] == "time"
    assert summary["split"]["test_from"] > summary["split"]["development_to"]
    recipe = summary["recipe"]
    assert recipe["folds"]["cv_method"] == "expanding-window"
    assert (
        recipe["fit_rows"] == summary["split"]["development_rows"] + summary["split"]["test_rows"]
    )
    assert recipe["calibration_rows"] < recipe["fit_rows"]  # out-of-fold rows only
    assert "3 Optuna trials" in recipe["tuning"]


def test_registers_challenger_with_lineage(byo_model, client):
    name = byo_model.model_name
    model = client.get_registered_model(name)
    assert {k: str(v) for k, v in model.aliases.items()} == {"challenger": "1"}
    version = client.get_model_version(name, "1")
    assert version.run_id == byo_model.summary["run_id"]
    assert version.tags["beats_baselines"] == "true"
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    spec_json = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/feature_spec.json")
    from features.spec import FeatureSpec

    spec = FeatureSpec.from_json(spec_json)
    assert run.data.tags["feature_spec.hash"] == spec.hash == version.tags["feature_spec.hash"]
    assert any(n.startswith("link_") for n in spec.names)
    assert len(run.data.tags["mlflow.source.git.commit"]) in (7, 40) or (
        run.data.tags["mlflow.source.git.commit"] == "unknown"
    )
    assert run.data.tags["data.digest"] == version.tags["data.digest"]
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.digest


def test_logs_metrics_baselines_slices_and_artifacts(byo_model, client):
    run = client.get_run(byo_model.summary["run_id"])
    metrics = run.data.metrics
    for who in ("model", "price_rule", "logistic_regression"):
        for name in ("roc_auc", "pr_auc", "precision_at_budget", "recall_at_budget"):
            assert f"{who}.{name}" in metrics
    assert metrics["model.pr_auc"] == pytest.approx(
        byo_model.summary["holdout_metrics"]["model"]["pr_auc"]
    )
    slices = [k for k in metrics if k.startswith("slice.category.") and k.endswith(".pr_auc")]
    assert len(slices) == 4
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    for folder in ("plots", "plots/shap_dependence", "metrics", "holdout", "training",
                   "explanations"):  # fmt: skip
        artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, folder)}
    for path in (
        "model_card.md",
        "feature_spec.json",
        "holdout/test.parquet",
        "training/keys.parquet",
        "metrics/category_slices.json",
        "metrics/feature_importance.json",
        "plots/pr_curve.png",
        "plots/calibration_curve.png",
        "plots/feature_importance.png",
        "plots/shap_summary.png",
        "plots/shap_group_importance.png",
        "explanations/group_importance.json",
        "explanations/genuine_reference.json",
        "explanations/genuine_reference_table.json",
    ):
        assert path in artifacts, path
    dependence = [p for p in artifacts if p.startswith("plots/shap_dependence/")]
    assert 1 <= len(dependence) <= 4
    # The logged references are the ones the registered model's reasons use.
    logged = mlflow.artifacts.load_dict(
        f"runs:/{run.info.run_id}/explanations/genuine_reference.json"
    )
    model = mlflow.pyfunc.load_model(byo_model.summary["model_uri"]).unwrap_python_model()
    assert logged == model.reference_.to_dict()
    groups = mlflow.artifacts.load_dict(
        f"runs:/{run.info.run_id}/explanations/group_importance.json"
    )
    shares = groups["data"]
    assert shares and all(row[1] >= 0 for row in shares)
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card.md")
    assert "price_rule" in card and "logistic_regression" in card and "Limitations" in card


def test_thread_count_is_logged_with_the_tuned_parameters(byo_model, client):
    # Predictions are identical for a given thread count only, so the run records it.
    params = client.get_run(byo_model.summary["run_id"]).data.params
    assert int(params["lgb.num_threads"]) == load_settings().num_threads
    assert float(params["lgb.learning_rate"]) == byo_model.summary["params"]["learning_rate"]


def test_trials_are_nested_runs_under_the_training_run(byo_model, client):
    run = client.get_run(byo_model.summary["run_id"])
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(children) == 3
    assert {c.data.tags["optuna.state"] for c in children} <= {"COMPLETE", "PRUNED"}
    assert all(c.info.status == "FINISHED" for c in children)


def test_logged_model_has_signature_input_example_and_loads(byo_model):
    uri = byo_model.summary["model_uri"]
    info = mlflow.models.get_model_info(uri)
    assert info.signature is not None
    inputs = info.signature.inputs.input_names()
    assert "price_to_reference_median" in inputs and "category" in inputs
    assert info.saved_input_example_info is not None
    assert info.metadata["feature_spec_hash"]
    model = mlflow.pyfunc.load_model(uri)
    example = pd.read_parquet(byo_model.data.features).head(3)
    with pytest.raises(Exception, match="link_"):
        model.predict(example)  # link features missing: the error names them


def test_the_same_command_twice_gives_the_same_model(own_data, tracking, cli, tmp_path):
    """Re-running the identical command (same Optuna storage) must not resume the first
    run's study: same data, seed, trials and threads give the same model, to the last bit."""
    common = ["--features", own_data.features, "--labels", own_data.labels, "--trials", 3,
              "--seed", 11]  # fmt: skip
    first = cli("train", *common)
    assert first.exit_code == 0, first.stderr
    # Plain output ends with the registered model's URI.
    assert first.stdout.strip().splitlines()[-1] == f"models:/{tracking.model_name}/1"
    second = cli("train", *common, "--json")
    assert second.exit_code == 0, second.stderr
    assert json.loads(second.stdout)["version"] == "2"
    scores = []
    for version in (1, 2):
        out = tmp_path / f"v{version}.parquet"
        result = cli(
            "score", "--features", own_data.features,
            "--model", f"models:/{tracking.model_name}/{version}", "--out", out,
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        scores.append(pd.read_parquet(out))
    pd.testing.assert_frame_equal(scores[0], scores[1])
    assert np.unique(scores[0]["score"]).size > 5  # not a constant model


def test_csv_input_and_a_persistent_resumable_study_with_timeout(
    make_data, tracking, cli, tmp_path
):
    import optuna

    data = make_data(tmp_path / "d", n_stores=1500, seed=2)
    csv = {}
    for what in ("features", "labels"):
        csv[what] = tmp_path / f"{what}.csv"
        pd.read_parquet(getattr(data, what)).to_csv(csv[what], index=False)
    storage = f"sqlite:///{tmp_path / 'shared-study.db'}"
    common = ["--features", csv["features"], "--labels", csv["labels"], "--storage", storage]
    names = []
    for extra in (["--trials", 2], ["--trials", 2, "--resume"], ["--trials", 2, "--resume"],
                  ["--trials", 1000, "--timeout", 1, "--resume"]):  # fmt: skip
        result = cli("train", *common, *extra, "--json")
        assert result.exit_code == 0, result.stderr
        names.append(json.loads(result.stdout)["study_name"])
    # A run starts its own study; --resume continues the one of this experiment and data.
    assert names[0] != names[1] and len(set(names[1:])) == 1
    assert len(optuna.load_study(study_name=names[0], storage=storage).trials) == 2
    study = optuna.load_study(study_name=names[1], storage=storage)
    assert 5 <= len(study.trials) < 100


def test_link_features_are_kept_only_when_cross_validation_wants_them(tracking, cli, tmp_path):
    """Labels carried by the links alone: the chosen feature set must include link columns."""
    rng = np.random.default_rng(3)
    n = 1200
    ids = np.array([f"s{i:04d}" for i in range(n)])
    counterfeit = rng.random(n) < 0.15
    features = pd.DataFrame({"store_id": ids, "noise_a": rng.normal(size=n),
                             "noise_b": rng.normal(size=n)})  # fmt: skip
    # Counterfeit stores link to each other (rings); genuine ones at random.
    fakes, genuine = ids[counterfeit], ids[~counterfeit]
    pairs = [(a, b) for a, b in zip(fakes[:-1], fakes[1:], strict=True)]
    pairs += [(a, b) for a, b in rng.choice(genuine, size=(n // 2, 2)) if a != b]
    links = pd.DataFrame(pairs, columns=["store_id", "linked_store_id"])
    labels = pd.DataFrame({"store_id": ids, "is_counterfeit": counterfeit.astype("int64")})
    paths = {k: tmp_path / f"{k}.parquet" for k in ("features", "labels", "links")}
    for key, frame in (("features", features), ("labels", labels), ("links", links)):
        frame.to_parquet(paths[key])
    result = cli(
        "train", "--features", paths["features"], "--labels", paths["labels"],
        "--links", paths["links"], "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    recipe = json.loads(result.stdout)["recipe"]
    scores = recipe["feature_selection_cv_pr_auc"]
    assert set(scores) == {"own", "own_and_link_counts", "all"}
    assert not recipe["features"].startswith("own ")  # the noise-only set lost
    assert scores["own"] < min(scores["own_and_link_counts"], scores["all"])
    spec = mlflow.pyfunc.load_model(json.loads(result.stdout)["model_uri"])
    names = spec.unwrap_python_model().spec.names
    assert any(n.startswith("link_") for n in names)
