"""The scoring model: one vectorised conversion, the records fast path, MLflow's pyfunc."""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from features.scoring import ScoringError
from features.scoring.encoding import encode_features, model_input
from features.scoring.model import CounterfeitScorer

# Rows of every kind of value: missing, unseen levels, categories given as numbers,
# booleans as objects, nullable integers.
ODD_ROWS = pd.DataFrame(
    {
        "store_id": ["a", "b", "c", "d"],
        "n": pd.array([4, None, 0, 2], dtype="Int64"),
        "flag": pd.Series([True, None, False, True], dtype=object),
        "kind": pd.Series(["a", None, "zzz", 7], dtype=object),
        "x": [0.5, np.nan, 2.5, -1.0],
    }
)


def _reference_matrix(frame: pd.DataFrame, scorer: CounterfeitScorer) -> np.ndarray:
    """Value by value, the encoding the vectorised one must reproduce."""
    rows = []
    for _, row in frame.iterrows():
        out = []
        for feature in scorer.spec:
            value = row[feature.name]
            if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
                out.append(np.nan)
            elif feature.dtype == "category":
                levels = scorer.levels_[feature.name]
                out.append(float(levels.index(str(value))) if str(value) in levels else np.nan)
            else:
                out.append(float(value))
        rows.append(out)
    return np.array(rows)


def test_table_encoding_matches_value_by_value_conversion(tiny_scorer):
    scorer, _ = tiny_scorer
    matrix = encode_features(ODD_ROWS, scorer.spec, scorer.levels_)
    np.testing.assert_array_equal(matrix, _reference_matrix(ODD_ROWS, scorer))


def test_records_fast_path_gives_the_table_path_scores_and_reasons(tiny_scorer):
    scorer, frame = tiny_scorer
    rows = pd.concat([frame.head(40), ODD_ROWS.drop(columns="store_id")], ignore_index=True)
    table = scorer.score_frame(rows)
    records = [
        {k: (None if v is pd.NA else v) for k, v in row.items()}
        for row in rows.to_dict(orient="records")
    ]
    fast = scorer.score_records(records)
    np.testing.assert_array_equal([r["score"] for r in fast], table["score"].to_numpy())
    np.testing.assert_array_equal([r["raw_score"] for r in fast], table["raw_score"].to_numpy())
    assert [r["reasons"] for r in fast] == [json.loads(t) for t in table["reasons"]]
    assert any(r["reasons"] for r in fast)


def test_a_key_left_out_of_a_record_is_a_missing_value(tiny_scorer):
    scorer, _ = tiny_scorer
    full = scorer.score_records([{"n": 3, "flag": True, "kind": "a", "x": None}])
    partial = scorer.score_records([{"n": 3, "flag": True, "kind": "a"}])
    assert full == partial


def test_a_record_with_text_for_a_number_names_the_feature(tiny_scorer):
    scorer, _ = tiny_scorer
    with pytest.raises(ScoringError, match="feature 'x' must be a number, got 'high'"):
        scorer.score_records([{"n": 1, "flag": False, "kind": "a", "x": "high"}])


def test_missing_columns_are_named(tiny_scorer):
    scorer, _ = tiny_scorer
    with pytest.raises(ScoringError, match="flag, kind, x"):
        scorer.predict(None, pd.DataFrame({"n": [1]}))


def test_a_text_column_where_a_number_belongs_is_named(tiny_scorer):
    scorer, frame = tiny_scorer
    with pytest.raises(ScoringError, match="'x' must be numeric"):
        scorer.score_frame(frame.head(3).assign(x=["1.0", "lots", "2"]))


def test_unseen_categories_are_missing_and_counts_show_as_ints(tiny_scorer):
    scorer, _ = tiny_scorer
    rows = pd.DataFrame(
        {"n": [4, 4, 4], "flag": [True, True, True], "kind": ["zzz", None, "a"], "x": 0.0}
    )
    out = scorer.predict(None, rows)
    assert out.loc[0, "score"] == out.loc[1, "score"]  # unseen level == missing
    assert out.loc[2, "score"] > out.loc[1, "score"]
    reasons = json.loads(out.loc[2, "reasons"])
    n_reason = next(r for r in reasons if r["feature"] == "n")
    assert n_reason["value"] == 4
    assert n_reason["text"] == f"n is 4 (genuine stores: {n_reason['normal']:g})"


def test_model_input_has_the_types_of_a_written_feature_table(tiny_scorer):
    scorer, frame = tiny_scorer
    prepared = model_input(frame.astype({"n": "float64", "flag": object}), scorer.spec)
    assert [str(t) for t in prepared.dtypes] == ["int64", "bool", "str", "float64"]
    with_missing = model_input(ODD_ROWS, scorer.spec)
    assert str(with_missing["n"].dtype) == "float64" and with_missing["n"].isna().sum() == 1


def test_a_booster_and_spec_of_different_widths_are_refused(tiny_scorer):
    scorer, _ = tiny_scorer
    narrower = scorer.spec.select(["n", "flag"])
    with pytest.raises(ScoringError, match="booster has 4 features, its FeatureSpec 2"):
        CounterfeitScorer.from_parts(scorer.booster_, scorer.calibrator_, narrower, {})


def test_plain_pyfunc_scores_a_table_as_written(tiny_scorer, save_scorer, tmp_path):
    """int64, bool and str columns pass MLflow's signature check as a written table has them."""
    scorer, frame = tiny_scorer
    path = save_scorer(scorer, frame)
    written = tmp_path / "features.parquet"
    frame.assign(store_id=[f"s{i}" for i in range(len(frame))]).to_parquet(written)
    table = pd.read_parquet(written)
    assert {str(t) for t in table.dtypes} == {"int64", "bool", "str", "float64"}
    scored = mlflow.pyfunc.load_model(str(path)).predict(table)
    pd.testing.assert_frame_equal(scored, scorer.score_frame(table))


def test_a_saved_model_ships_only_the_spec_and_the_scoring_code(tiny_scorer, save_scorer):
    scorer, frame = tiny_scorer
    code = save_scorer(scorer, frame) / "code"
    shipped = sorted(str(p.relative_to(code)) for p in code.rglob("*.py"))
    assert shipped == [
        "features/__init__.py",
        "features/scoring/__init__.py",
        "features/scoring/calibrator.py",
        "features/scoring/encoding.py",
        "features/scoring/model.py",
        "features/scoring/reasons.py",
        "features/scoring/reference.py",
        "features/scoring/treeshap.py",
        "features/spec.py",
    ]
