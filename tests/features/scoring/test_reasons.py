"""Reasons with every score: additive, both ways, against what is normal among genuine stores."""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from features.scoring.encoding import encode_features
from features.scoring.model import CounterfeitScorer
from features.scoring.reasons import Explainer, impact_level
from features.scoring.reference import FeatureReference, fit_reference
from features.spec import Feature, FeatureSpec


def _with_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """The fixture rows with missing values in every column, unseen levels included."""
    rows = frame.head(40).copy()
    rows.loc[rows.index[::3], "x"] = np.nan
    rows.loc[rows.index[1::4], "kind"] = None
    rows.loc[rows.index[2::5], "kind"] = "never-seen"
    return rows.reset_index(drop=True)


def test_base_value_plus_contributions_is_the_raw_score(tiny_scorer):
    scorer, frame = tiny_scorer
    rows = _with_missing(frame)
    scored = scorer.explain(encode_features(rows, scorer.spec, scorer.levels_))
    assert scored.contributions.sum(axis=1) == pytest.approx(scored.raw, abs=1e-6)
    table = scorer.score_frame(rows)
    assert table["raw_score"].to_numpy() == pytest.approx(scored.raw, abs=1e-12)
    for row in table.itertuples():
        groups = json.loads(row.groups)
        # The group sums are the whole explanation: base + groups = raw margin.
        assert row.base_value + sum(groups.values()) == pytest.approx(row.raw_score, abs=1e-5)
    assert table["base_value"].nunique() == 1


def test_reasons_go_both_ways_and_k_is_configurable(tiny_scorer, save_scorer):
    scorer, frame = tiny_scorer
    table = scorer.score_frame(frame, risk_k=5, mitigating_k=3)
    risk = [json.loads(r) for r in table["reasons"]]
    mitigating = [json.loads(r) for r in table["mitigating"]]
    assert any(mitigating), "no row has a mitigating reason"
    for up, down in zip(risk, mitigating, strict=True):
        assert len(up) <= 4 and len(down) <= 3  # the fixture model has 4 features
        assert [r["contribution"] for r in up] == sorted(
            (r["contribution"] for r in up), reverse=True
        )
        assert all(r["contribution"] > 0 for r in up)
        assert [r["contribution"] for r in down] == sorted(r["contribution"] for r in down)
        assert all(r["contribution"] < 0 for r in down)
        assert not {r["feature"] for r in up} & {r["feature"] for r in down}
    # The same through MLflow, with the counts as predict params.
    model = mlflow.pyfunc.load_model(str(save_scorer(scorer, frame)))
    fewer = model.predict(frame, params={"risk_reasons": 1, "mitigating_reasons": 0})
    assert all(len(json.loads(r)) <= 1 for r in fewer["reasons"])
    assert set(fewer["mitigating"]) == {"[]"}
    assert fewer["score"].tolist() == table["score"].tolist()


def test_a_reason_says_what_is_normal_and_where_the_store_sits(tiny_scorer):
    scorer, frame = tiny_scorer
    table = scorer.score_frame(frame)
    x_reasons = [r for cell in table["reasons"] for r in json.loads(cell) if r["feature"] == "x"]
    assert x_reasons
    genuine = frame["x"][~((frame["n"] > 2) & (frame["kind"] == "a") | (frame["x"] > 1.5))]
    for reason in x_reasons:
        assert reason["group"] == "custom"
        assert reason["normal"] == pytest.approx(genuine.median(), rel=1e-5)
        # Formatted like the store's value: the template says {value:.2f}.
        assert (
            reason["text"] == f"x is {reason['value']:.2f} (genuine stores: {reason['normal']:.2f})"
        )
        share_below = (genuine < reason["value"]).mean() * 100
        assert reason["percentile"] == pytest.approx(share_below, abs=1.5)
        assert reason["impact"] == impact_level(reason["contribution"])


def test_percentiles_and_impact_levels():
    reference = fit_reference(np.arange(1.0, 101.0).reshape(-1, 1), _spec("v"))
    feature = reference.features["v"]
    assert feature.normal == 50.5
    assert feature.percentile(0.0) == 0.0 and feature.percentile(1000.0) == 100.0
    assert feature.percentile(50.5) == pytest.approx(50.0, abs=1.0)
    assert feature.percentile(float("nan")) is None
    assert FeatureReference(None, (), 1.0).percentile(3.0) is None
    # Ties count half: a value every genuine store shares sits in the middle.
    assert fit_reference(np.zeros((50, 1)), _spec("v")).features["v"].percentile(0.0) == 50.0
    assert [impact_level(c) for c in (0.0, 0.04, 0.05, 0.2, -0.3, 0.7, 5.0)] == [
        0,
        0,
        1,
        2,
        3,
        4,
        5,
    ]


def test_link_reasons_count_the_linked_and_the_known_counterfeit_stores():
    spec = FeatureSpec(
        (
            Feature("link_linked_stores", "link_graph", "int", "linked", "higher",
                    "linked to {value} stores"),
            Feature("link_known_counterfeit", "link_graph", "int", "known", "higher",
                    "linked to {value} known counterfeit stores"),
            Feature("price", "pricing", "float", "price", "lower", "sells at {value:.0%}"),
        )
    )  # fmt: skip
    matrix = np.array([[7.0, 2.0, 0.4], [0.0, 0.0, 1.0]])
    contributions = np.array([[0.9, 0.6, -0.2, -3.0], [-0.1, -0.05, 0.3, -3.0]])
    explained = Explainer(spec, {}, None).explain(contributions, matrix)
    top = explained[0].risk[0]
    assert (top.feature, top.linked_stores, top.known_counterfeit) == ("link_linked_stores", 7, 2)
    assert explained[0].risk[1].known_counterfeit == 2
    assert explained[0].mitigating[0].linked_stores is None  # a pricing reason
    assert explained[0].groups == {"link_graph": 1.5, "pricing": -0.2}
    assert list(explained[1].groups) == ["pricing", "link_graph"]  # by magnitude
    assert explained[1].mitigating[0].to_dict()["linked_stores"] == 0
    assert explained[0].base_value == -3.0
    # No reference: no normal, no percentile, the plain sentence.
    assert explained[0].risk[0].text == "linked to 7 stores"
    assert explained[0].risk[0].normal is None and explained[0].risk[0].percentile is None


def test_a_model_without_a_reference_still_explains(tiny_scorer):
    scorer, frame = tiny_scorer
    bare = CounterfeitScorer.from_parts(scorer.booster_, scorer.calibrator_, scorer.spec,
                                        scorer.levels_)  # fmt: skip
    with_reference, without = scorer.score_frame(frame), bare.score_frame(frame)
    assert without["score"].tolist() == with_reference["score"].tolist()
    reasons = [r for cell in without["reasons"] for r in json.loads(cell)]
    assert reasons and all(r["normal"] is None and "genuine" not in r["text"] for r in reasons)


def _spec(name: str) -> FeatureSpec:
    return FeatureSpec((Feature(name, "custom", "float", name, "higher", "{value}"),))
