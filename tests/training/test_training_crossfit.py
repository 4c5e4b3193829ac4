"""The recipe: folds that respect time, out-of-fold scores, calibration on them, the refit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.spec import Feature, FeatureSpec
from training.crossfit import (
    MIN_FOLD_POSITIVES,
    TooFewLabelsError,
    cross_fit,
    fit_model,
    make_folds,
)
from training.model import default_params, fixed_params


def _times(n: int) -> np.ndarray:
    # Ties on purpose: four labels share each day.
    return (pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) // 4, "D")).to_numpy()


def test_expanding_windows_validate_only_on_later_labels_and_never_split_a_timestamp():
    rng = np.random.default_rng(0)
    n = 1000
    y = (rng.random(n) < 0.1).astype(int)
    times = _times(n)[rng.permutation(n)]  # input order must not matter
    folds = make_folds(y, times, seed=0)
    assert folds.method == "expanding-window" and len(folds.pairs) == 4
    validated = np.concatenate([valid for _, valid in folds.pairs])
    assert len(np.unique(validated)) == len(validated)  # each row held out once at most
    for train, valid in folds.pairs:
        assert times[train].max() < times[valid].min()
        assert y[valid].sum() >= MIN_FOLD_POSITIVES
    # Each fold trains on everything before its validation block.
    for (train, _), (_, previous_valid) in zip(folds.pairs[1:], folds.pairs[:-1], strict=True):
        assert set(previous_valid) <= set(train)


def test_folds_merge_when_positives_are_few_and_refuse_when_they_cannot():
    n = 200
    y = np.zeros(n, int)
    y[[20, 60, 90, 110, 130, 150, 170, 190, 195]] = 1  # nine positives, most of them late
    folds = make_folds(y, _times(n), seed=0)
    assert 2 <= len(folds.pairs) < 4
    assert all(y[valid].sum() >= MIN_FOLD_POSITIVES for _, valid in folds.pairs)
    stratified = make_folds(y, None, seed=0)
    assert stratified.method == "stratified" and len(stratified.pairs) == 3
    with pytest.raises(TooFewLabelsError, match="5 positive and 195 negative labels"):
        make_folds(np.r_[np.ones(5, int), np.zeros(195, int)], None, seed=0)


def _noise(n: int, seed: int) -> tuple[pd.DataFrame, FeatureSpec]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(8)})
    frame["is_counterfeit"] = (rng.random(n) < 0.2).astype("int64")
    spec = FeatureSpec(tuple(Feature(f"x{i}", "custom", "float", f"x{i}") for i in range(8)))
    return frame, spec


def test_out_of_fold_scores_come_from_models_that_never_saw_the_row():
    """On pure noise a model fits its own rows, but out-of-fold it must be guessing."""
    frame, spec = _noise(1500, seed=1)
    y = frame["is_counterfeit"].to_numpy()
    folds = make_folds(y, None, seed=0)
    params = {**fixed_params(0, 1), **default_params(), "num_leaves": 31, "min_data_in_leaf": 5}
    fitted = cross_fit(frame, spec, {}, params, folds)
    assert sorted(fitted.oof_rows) == list(range(len(frame)))  # stratified: every row once
    assert abs(roc_auc_score(y[fitted.oof_rows], fitted.oof_raw) - 0.5) < 0.06
    model = fit_model(frame, spec, {**params, "learning_rate": 0.2}, folds, 50)
    in_sample = model.scorer.score_frame(frame)["raw_score"]
    assert roc_auc_score(y, in_sample) > 0.6  # the refit did learn its own rows


def test_the_recipe_refits_on_every_row_and_calibrates_out_of_fold(make_data, tmp_path):
    """A few hundred labels still give a real model: many trees and fine-grained scores."""
    from training.dataset import load_own_data

    data = load_own_data(*_own_files(make_data, tmp_path, n_stores=500))
    frame = data.frame
    y = frame["is_counterfeit"].to_numpy()
    folds = make_folds(y, frame["as_of"].to_numpy(), seed=0)
    params = {**fixed_params(0, 1), **default_params()}
    model = fit_model(frame, data.spec, params, folds, sigmoid_below_positives=50)
    assert model.rows == len(frame) and model.positives == y.sum()
    assert model.scorer.booster_.num_trees() == model.crossfit.rounds >= 10
    assert len(model.crossfit.oof_rows) < len(frame)  # the oldest block has no OOF score
    calibrator = model.scorer.calibrator_
    assert calibrator["fit_rows"] == len(model.crossfit.oof_rows)
    scores = model.scorer.score_frame(frame)["score"]
    assert scores.nunique() > len(frame) / 4


def _own_files(make_data, tmp_path, n_stores: int):
    data = make_data(tmp_path / "own", n_stores=n_stores, seed=4)
    return data.features, data.labels
