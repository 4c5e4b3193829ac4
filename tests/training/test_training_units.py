"""Fast checks of the training stages: split, link leakage, calibration, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from features.byo import OwnDataError
from features.scoring.calibrator import apply_calibrator
from features.spec import Feature, FeatureSpec
from training.baselines import price_rule_scores
from training.calibration import fit_calibrator
from training.dataset import (
    LABEL,
    TIME,
    TrainingData,
    TrainingDataError,
    load_own_data,
    split,
)
from training.evaluate import at_budget, expected_calibration_error, ranking_metrics
from training.settings import load_settings


def _data(n: int = 400, positives_every: int = 5, timed: bool = True) -> TrainingData:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "store_id": [f"s{i:04d}" for i in range(n)],
            "x": rng.normal(size=n),
            LABEL: (np.arange(n) % positives_every == 0).astype("int64"),
        }
    )
    if timed:
        # Ties on purpose: a period boundary must never split one timestamp.
        frame.insert(1, TIME, pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) // 4, "D"))
    spec = FeatureSpec((Feature("x", "custom", "float", "x"),))
    return TrainingData(frame, spec, "test", None)


def test_time_split_tests_on_the_most_recent_labels():
    parts = split(_data(), seed=0, settings=load_settings())
    assert parts.method == "time"
    assert parts.development[TIME].max() < parts.test[TIME].min()
    assert len(parts.development) + len(parts.test) == 400
    assert 0.15 <= len(parts.test) / 400 <= 0.25


def test_stratified_split_without_label_times_is_seeded_and_keeps_both_classes():
    data = _data(timed=False)
    a = split(data, seed=1, settings=load_settings())
    b = split(data, seed=1, settings=load_settings())
    c = split(data, seed=2, settings=load_settings())
    assert a.method == "stratified"
    pd.testing.assert_frame_equal(a.test, b.test)
    assert not a.test["store_id"].equals(c.test["store_id"])
    for part in a.parts().values():
        assert part[LABEL].mean() == pytest.approx(0.2, abs=0.02)


def test_the_holdout_reaches_back_for_positives_but_not_too_far():
    data = _data()

    def without_late_positives(share: float) -> TrainingData:
        late = data.frame[TIME] >= data.frame[TIME].quantile(1 - share)
        frame = data.frame.assign(**{LABEL: np.where(late, 0, data.frame[LABEL])})
        return TrainingData(frame, data.spec, "test", None)

    # The most recent fifth holds no positive: the holdout grows to hold five.
    parts = split(without_late_positives(0.2), seed=0, settings=load_settings())
    assert parts.test[LABEL].sum() == 5 and 0.2 < len(parts.test) / 400 <= 0.35
    assert parts.development[TIME].max() < parts.test[TIME].min()
    # ...but never past 35% of the labels.
    with pytest.raises(TrainingDataError, match="the holdout .* holds 0 positive labels"):
        split(without_late_positives(0.4), seed=0, settings=load_settings())


def test_own_link_features_never_see_the_rows_own_label(make_data, tmp_path):
    data = make_data(tmp_path / "d", n_stores=600, seed=1)
    before = load_own_data(data.features, data.labels, data.links).frame
    labels = pd.read_parquet(data.labels)
    target = before.loc[before["link_linked_stores"] > 0, "store_id"].iloc[0]
    labels.loc[labels["store_id"] == target, LABEL] ^= 1
    labels.to_parquet(data.labels)
    after = load_own_data(data.features, data.labels, data.links).frame
    link_columns = [c for c in before.columns if c.startswith("link_")]
    row_before = before.set_index("store_id").loc[target, link_columns]
    row_after = after.set_index("store_id").loc[target, link_columns]
    pd.testing.assert_series_equal(row_before, row_after)
    # ...while the label does reach linked stores labelled later.
    assert not before[link_columns].equals(after[link_columns])


def _calibration_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = np.round(rng.normal(size=n), 3)  # rounded: ties in the raw score stay ties
    return raw, (rng.random(n) < 1 / (1 + np.exp(-2 * raw + 2))).astype(int)


def test_calibrated_score_is_a_strictly_increasing_function_of_the_raw_score():
    raw, y = _calibration_data(2000, seed=3)
    test_raw, test_y = _calibration_data(2000, seed=4)
    # Beyond the fitted range too, where a plain isotonic fit is flat.
    test_raw = np.r_[test_raw, raw.min() - [1.0, 2.0, 30.0], raw.max() + [1.0, 2.0, 30.0]]
    test_y = np.r_[test_y, 0, 0, 0, 1, 1, 1]
    for positives_needed in (50, 10_000):  # isotonic, then sigmoid
        calibrator = fit_calibrator(raw, y, sigmoid_below_positives=positives_needed)
        assert calibrator["method"] == ("isotonic" if positives_needed == 50 else "sigmoid")
        p = apply_calibrator(calibrator, test_raw)
        order = np.argsort(test_raw, kind="stable")
        distinct = np.r_[True, np.diff(test_raw[order]) > 0]
        assert np.all(np.diff(p[order][distinct]) > 0)  # strictly increasing
        assert len(np.unique(p)) == len(np.unique(test_raw))
        assert p.min() > 0 and p.max() < 1
        assert roc_auc_score(test_y, p) == roc_auc_score(test_y, test_raw)
        assert average_precision_score(test_y, p) == average_precision_score(test_y, test_raw)


def test_centred_isotonic_calibrates_about_as_well_as_isotonic_regression():
    raw, y = _calibration_data(3000, seed=5)
    test_raw, test_y = _calibration_data(3000, seed=6)
    ours = apply_calibrator(fit_calibrator(raw, y, sigmoid_below_positives=50), test_raw)
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, y)
    step = isotonic.predict(test_raw)
    assert len(np.unique(step)) < len(np.unique(test_raw)) / 10  # the step function ties
    assert (
        expected_calibration_error(test_y, ours) <= expected_calibration_error(test_y, step) + 0.005
    )
    assert average_precision_score(test_y, ours) > average_precision_score(test_y, step)


def test_budget_metrics_and_calibration_error_by_hand():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    scores = np.arange(10, 0, -1, dtype=float)  # ranked in input order
    assert at_budget(y, scores, 2) == (0.5, pytest.approx(1 / 3))
    assert at_budget(y, scores, 3) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    metrics = ranking_metrics(y, scores, budget=3)
    assert metrics["precision_at_budget"] == pytest.approx(2 / 3)
    # 1% of 10 stores is one store: a precision of 0 or 1 that means nothing is not reported.
    assert "precision_at_1pct" not in metrics
    many = ranking_metrics(np.tile(y, 300), np.arange(3000, 0, -1, dtype=float))
    assert many["precision_at_1pct"] == pytest.approx(9 / 30)  # 30 stores
    assert expected_calibration_error(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0
    assert expected_calibration_error(np.array([1, 1]), np.array([0.2, 0.2])) == pytest.approx(0.8)


def test_price_rule_ranks_cheapest_first_and_missing_last():
    frame = pd.DataFrame({"price": [1.0, 0.3, np.nan, 0.6]})
    order = np.argsort(-price_rule_scores(frame, "price"))
    assert order.tolist() == [1, 3, 0, 2]


def _timed_own_files(tmp_path):
    """Features as of two times per store, and labels between and after them."""
    t1, t2 = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-03-01")
    features = pd.DataFrame(
        {
            "store_id": ["a", "a", "b", "b"],
            "as_of": [t1, t2, t1, t2],
            "x": [1.0, 2.0, 10.0, 20.0],
        }
    )
    labels = pd.DataFrame(
        {
            "store_id": ["a", "a", "b"],
            "is_counterfeit": [0, 1, 1],
            "labeled_at": [t1 + pd.Timedelta(days=10), t2, t2 + pd.Timedelta(days=1)],
        }
    )
    paths = tmp_path / "features.parquet", tmp_path / "labels.parquet"
    features.to_parquet(paths[0])
    labels.to_parquet(paths[1])
    return paths, features, labels


def test_own_features_with_as_of_match_each_label_to_the_latest_row_before_it(tmp_path):
    (features_path, labels_path), _, labels = _timed_own_files(tmp_path)
    data = load_own_data(features_path, labels_path)
    rows = data.frame.set_index(["store_id", "as_of"])["x"]
    assert rows[("a", labels["labeled_at"][0])] == 1.0  # between t1 and t2: the t1 row
    assert rows[("a", labels["labeled_at"][1])] == 2.0  # exactly at t2: the t2 row
    assert rows[("b", labels["labeled_at"][2])] == 20.0
    assert data.notes == ()
    early = labels.assign(labeled_at=pd.Timestamp("2023-12-01") + pd.to_timedelta([0, 1, 2], "D"))
    early.to_parquet(labels_path)
    with pytest.raises(OwnDataError, match="3 labels have no feature row at or before"):
        load_own_data(features_path, labels_path)


def test_untimed_own_features_with_timed_labels_warn_loudly(tmp_path):
    (features_path, labels_path), features, _ = _timed_own_files(tmp_path)
    features.drop_duplicates("store_id", keep="last").drop(columns="as_of").to_parquet(
        features_path
    )
    data = load_own_data(features_path, labels_path)
    assert len(data.notes) == 1 and data.notes[0].startswith("WARNING")
    assert "as_of" in data.notes[0]
