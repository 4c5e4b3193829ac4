"""``spotcheck score``: every store gets a calibrated score, a rank and its reasons."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient


@pytest.fixture
def scored(byo_model, cli, tmp_path) -> pd.DataFrame:
    data = byo_model.data
    out = tmp_path / "scores.parquet"
    result = cli(
        "score", "--features", data.features, "--links", data.links, "--labels", data.labels,
        "--model", f"models:/{byo_model.model_name}/1", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]  # no temp file left
    return pd.read_parquet(out)


def test_every_store_gets_score_rank_and_reasons(scored, byo_model):
    features = pd.read_parquet(byo_model.data.features)
    assert list(scored.columns) == [
        "store_id", "score", "rank", "raw_score", "base_value", "reason_1", "reason_2",
        "reason_3", "reasons", "mitigating", "groups",
    ]  # fmt: skip
    assert sorted(scored["store_id"]) == sorted(features["store_id"])
    assert scored["rank"].tolist() == list(range(1, len(features) + 1))
    assert scored["score"].between(0, 1).all()
    assert scored["score"].is_monotonic_decreasing
    # No score without reasons: the riskiest stores all carry at least one.
    top = scored.head(50)
    assert (top["reason_1"].str.len() > 0).all()
    for row in top.itertuples():
        reasons = json.loads(row.reasons)
        assert 1 <= len(reasons) <= 5
        assert reasons[0]["text"] == row.reason_1
        contributions = [r["contribution"] for r in reasons]
        assert contributions == sorted(contributions, reverse=True) and contributions[-1] > 0
        assert {"feature", "group", "value", "normal", "percentile", "impact", "text"} <= set(
            reasons[0]
        )
        mitigating = [r["contribution"] for r in json.loads(row.mitigating)]
        assert mitigating == sorted(mitigating) and all(c < 0 for c in mitigating)


def test_scores_separate_known_counterfeits(scored, byo_model):
    labels = pd.read_parquet(byo_model.data.labels)
    merged = scored.merge(labels, on="store_id")
    by_class = merged.groupby("is_counterfeit")["score"].mean()
    assert by_class[1] > 2 * by_class[0]


def test_alias_version_and_run_uris_give_the_same_scores(byo_model, cli, tmp_path, mlflow_uri):
    name = byo_model.model_name
    client = MlflowClient(mlflow_uri)
    # An alias of this test's own: the shared model's champion/challenger stay untouched.
    client.set_registered_model_alias(name, "serving-test", "1")
    uris = (
        f"models:/{name}@serving-test",
        f"models:/{name}/1",
        f"runs:/{byo_model.summary['run_id']}/model",
    )
    frames = []
    try:
        for i, uri in enumerate(uris):
            out = tmp_path / f"s{i}.csv"
            data = byo_model.data
            result = cli(
                "score", "--features", data.features, "--links", data.links,
                "--labels", data.labels, "--model", uri, "--out", out,
            )  # fmt: skip
            assert result.exit_code == 0, result.stderr
            frames.append(pd.read_csv(out, keep_default_na=False))
    finally:
        client.delete_registered_model_alias(name, "serving-test")
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])


def test_missing_feature_columns_fail_clearly_and_write_nothing(byo_model, cli, tmp_path):
    features = pd.read_parquet(byo_model.data.features).drop(columns=["dispute_rate"])
    path = tmp_path / "features.parquet"
    features.to_parquet(path)
    out = tmp_path / "scores.parquet"
    result = cli(
        "score", "--features", path, "--links", byo_model.data.links,
        "--model", f"models:/{byo_model.model_name}/1", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "dispute_rate" in result.stderr
    assert not out.exists()


def test_unknown_model_uri_is_a_clear_error(byo_model, cli, tmp_path):
    result = cli(
        "score", "--features", byo_model.data.features,
        "--model", f"models:/{byo_model.model_name}/99", "--out", tmp_path / "s.parquet",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "cannot load model" in result.stderr


def test_ties_in_the_score_are_ranked_by_raw_score_then_store_id(make_scorer, save_scorer):
    """A step-shaped calibrator ties many stores: the queue still has one total order."""
    from serving.batch import load_model, score_stores

    flat = {"method": "isotonic", "x": [-50.0, 50.0], "y": [0.3, 0.3]}
    scorer, frame = make_scorer(flat)
    model = load_model(str(save_scorer(scorer, frame)))
    rows = frame.head(30).assign(store_id=[f"s{i:02d}" for i in range(30)])
    # Two stores with identical features: equal raw scores, ordered by store id.
    rows = pd.concat([rows, rows.iloc[[0]].assign(store_id="s00a")], ignore_index=True)
    ranked = score_stores(model, rows.iloc[::-1])
    raw = scorer.score_frame(rows).set_index(rows["store_id"])["raw_score"]
    assert ranked["score"].nunique() == 1
    expected = sorted(rows["store_id"], key=lambda store: (-raw[store], store))
    assert ranked["store_id"].tolist() == expected
    assert ranked["rank"].tolist() == list(range(1, 32))
    assert raw.nunique() >= 3  # the raw scores differ: the tie-break had something to order


def test_reason_counts_are_options_and_link_reasons_carry_their_counts(byo_model, cli, tmp_path):
    data = byo_model.data
    out = tmp_path / "scores.csv"
    result = cli(
        "score", "--features", data.features, "--links", data.links, "--labels", data.labels,
        "--model", f"models:/{byo_model.model_name}/1", "--out", out, "--reasons", 2,
        "--mitigating", 1, "--top", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    scored = pd.read_csv(out)
    risk = [json.loads(cell) for cell in scored["reasons"]]
    mitigating = [json.loads(cell) for cell in scored["mitigating"]]
    assert max(map(len, risk)) == 2 and max(map(len, mitigating)) == 1
    link_reasons = [r for rows in risk + mitigating for r in rows if r["group"] == "link_graph"]
    assert link_reasons, "no link-graph reason among the scored stores"
    assert all({"linked_stores", "known_counterfeit"} <= set(r) for r in link_reasons)
    assert all(0 <= r["known_counterfeit"] <= r["linked_stores"] for r in link_reasons)
    # Every reason of a model trained here knows what is normal among genuine stores.
    assert all("genuine stores:" in r["text"] for rows in risk for r in rows)
    refused = cli(
        "score", "--features", data.features, "--model", f"models:/{byo_model.model_name}/1",
        "--out", out, "--reasons", -1,
    )  # fmt: skip
    assert refused.exit_code == 2


def test_the_cli_reason_defaults_are_the_scorers():
    from features.scoring import reasons
    from serving import cli

    assert (cli.RISK_REASONS, cli.MITIGATING_REASONS) == (
        reasons.RISK_REASONS,
        reasons.MITIGATING_REASONS,
    )


def test_a_model_whose_features_are_defined_differently_is_refused(tiny_scorer, save_scorer):
    import dataclasses

    import mlflow.pyfunc

    from features.spec import Feature, FeatureSpec
    from serving import ServingError
    from serving.batch import check_model_spec

    scorer, frame = tiny_scorer
    model = mlflow.pyfunc.load_model(str(save_scorer(scorer, frame)))
    spec = scorer.spec
    extra = Feature("unused", "custom", "float", "not in the model")
    check_model_spec(model, spec + FeatureSpec((extra,)))  # a superset is fine
    changed = FeatureSpec(
        tuple(dataclasses.replace(f, description="redefined") if f.name == "x" else f for f in spec)
    )
    with pytest.raises(ServingError) as refused:
        check_model_spec(model, changed)
    message = str(refused.value)
    assert spec.hash in message and changed.hash in message and "defined differently: x" in message
    with pytest.raises(ServingError, match="no feature.*x"):
        check_model_spec(model, spec.select(["n", "flag", "kind"]))
