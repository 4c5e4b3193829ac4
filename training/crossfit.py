"""Cross-fitting: validation folds that respect time, out-of-fold scores, the refit model.

Every labelled row is used. Folds are expanding windows when labels carry times (fold k
trains on the oldest k blocks and validates on the next one, so no fold learns from the
future) and stratified K-fold otherwise. LightGBM's ``cv`` boosts all folds in step and
stops on their mean validation PR-AUC, which picks the number of rounds from a curve far
less noisy than one small validation slice; each fold's booster then scores the rows it held
out (out-of-fold scores), the calibrator is fitted on those, and the model that is kept is
refit on every row with the chosen parameters and rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.byo import LABEL
from features.scoring.encoding import category_levels, encode_features
from features.scoring.model import CounterfeitScorer
from features.scoring.reference import fit_reference
from features.spec import AS_OF, FeatureSpec
from training import TrainingError
from training.calibration import fit_calibrator
from training.model import EARLY_STOPPING_ROUNDS, MAX_ROUNDS, METRIC, lgb_dataset

# Expanding windows: the rows are cut into TIME_FOLDS + 1 blocks by label time.
TIME_FOLDS = 4
STRATIFIED_FOLDS = 5
# Fewer positives than this in a validation fold make its PR-AUC noise: folds are merged.
MIN_FOLD_POSITIVES = 3
MIN_FOLDS = 2


class TooFewLabelsError(TrainingError):
    """The labels cannot be cut into enough folds with positives to validate on."""


@dataclass(frozen=True)
class Folds:
    """Cross-validation folds over a frame's rows (positions), and how they were cut.

    Attributes:
        pairs: ``(train positions, validation positions)`` per fold.
        method: ``expanding-window`` or ``stratified``.
    """

    pairs: tuple[tuple[np.ndarray, np.ndarray], ...]
    method: str

    def describe(self) -> dict[str, Any]:
        """Fold count, method and validation sizes, for logging."""
        return {
            "cv_method": self.method,
            "cv_folds": len(self.pairs),
            "cv_validation_rows": [len(v) for _, v in self.pairs],
        }


def make_folds(y: np.ndarray, times: np.ndarray | None, seed: int) -> Folds:
    """Cut rows into folds: expanding windows by time when ``times`` is given, else stratified.

    Args:
        y: 0/1 labels of the rows.
        times: Label time per row (any sortable values), or None.
        seed: Shuffling seed of stratified folds.

    Raises:
        TooFewLabelsError: Not even ``MIN_FOLDS`` folds with ``MIN_FOLD_POSITIVES`` positives.
    """
    y = np.asarray(y, dtype="int64")
    if times is not None:
        return _time_folds(y, np.asarray(times))
    return _stratified_folds(y, seed)


def _time_folds(y: np.ndarray, times: np.ndarray) -> Folds:
    """Expanding windows over time blocks, each validation block holding enough positives."""
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    for folds in range(TIME_FOLDS, MIN_FOLDS - 1, -1):
        # Block boundaries at row-count quantiles, moved to the first row of their time so
        # one timestamp never straddles two blocks.
        cuts = [int(len(y) * k / (folds + 1)) for k in range(1, folds + 1)]
        cuts = sorted({int(np.searchsorted(sorted_times, sorted_times[c], "left")) for c in cuts})
        bounds = [0, *cuts, len(y)]
        blocks = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        pairs = tuple(
            (np.sort(np.concatenate(blocks[:k])), np.sort(blocks[k])) for k in range(1, len(blocks))
        )
        if len(pairs) >= MIN_FOLDS and all(_enough(y, train, valid) for train, valid in pairs):
            return Folds(pairs, "expanding-window")
    raise TooFewLabelsError(_too_few(y))


def _stratified_folds(y: np.ndarray, seed: int) -> Folds:
    """Stratified K-fold with as many folds (up to 5) as the positives allow."""
    from sklearn.model_selection import StratifiedKFold

    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    folds = min(STRATIFIED_FOLDS, positives // MIN_FOLD_POSITIVES, negatives)
    if folds < MIN_FOLDS:
        raise TooFewLabelsError(_too_few(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    pairs = tuple((train, valid) for train, valid in splitter.split(np.zeros(len(y)), y))
    return Folds(pairs, "stratified")


def _enough(y: np.ndarray, train: np.ndarray, valid: np.ndarray) -> bool:
    """Whether a fold can train and measure: positives and negatives on both sides."""
    positives = int(y[valid].sum())
    return (
        positives >= MIN_FOLD_POSITIVES
        and positives < len(valid)
        and 0 < int(y[train].sum()) < len(train)
    )


def _too_few(y: np.ndarray) -> str:
    return (
        f"{int(y.sum())} positive and {int(len(y) - y.sum())} negative labels cannot be cut into "
        f"{MIN_FOLDS} cross-validation folds with {MIN_FOLD_POSITIVES} positives each"
    )


@dataclass(frozen=True)
class CrossFit:
    """Result of cross-validating one parameter set.

    Attributes:
        rounds: Boosting rounds at the best mean validation PR-AUC.
        score: That mean validation PR-AUC.
        oof_rows: Positions of the rows that have an out-of-fold raw score (every row held
            out by a fold; with expanding windows the oldest block has none).
        oof_raw: Their out-of-fold raw scores (log-odds).
    """

    rounds: int
    score: float
    oof_rows: np.ndarray
    oof_raw: np.ndarray


def cv_dataset(
    frame: pd.DataFrame, spec: FeatureSpec, levels: dict[str, list[str]], params: dict[str, Any]
) -> lgb.Dataset:
    """The binned Dataset of every row, built once and subset per fold by ``lgb.cv``.

    Bins come from all rows' feature values (never their labels); the raw matrix is freed,
    so a fit that changes a dataset parameter fails loudly instead of re-binning.
    """
    return lgb_dataset(frame, spec, levels, params=params, free_raw_data=True).construct()


class CVResult(NamedTuple):
    """What cross-validating one parameter set measured.

    Attributes:
        rounds: Boosting rounds at the best mean validation PR-AUC.
        score: That mean validation PR-AUC.
        boosters: The fold boosters.
        standard_error: Standard error of the mean there (fold spread / sqrt(folds)).
    """

    rounds: int
    score: float
    boosters: lgb.CVBooster
    standard_error: float


def cross_validate(
    params: dict[str, Any],
    dataset: lgb.Dataset,
    folds: Folds,
    callbacks: Sequence[Callable] = (),
) -> CVResult:
    """Boost every fold in step, early-stopping on the mean validation PR-AUC."""
    result = lgb.cv(
        params,
        dataset,
        num_boost_round=MAX_ROUNDS,
        folds=list(folds.pairs),
        stratified=False,
        shuffle=False,
        callbacks=[
            lgb.early_stopping(
                EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False, min_delta=0.0
            ),
            *callbacks,
        ],
        return_cvbooster=True,
    )
    # lgb.cv cuts the curves at the best round of the mean validation PR-AUC.
    curve = np.asarray(result[f"valid {METRIC}-mean"])
    spread = float(result[f"valid {METRIC}-stdv"][-1])
    return CVResult(
        len(curve), float(curve[-1]), result["cvbooster"], spread / np.sqrt(len(folds.pairs))
    )


def cross_fit(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    params: dict[str, Any],
    folds: Folds,
    dataset: lgb.Dataset | None = None,
) -> CrossFit:
    """Cross-validate one parameter set and score every held-out row out of fold.

    Args:
        frame: The labelled rows the folds index.
        spec: FeatureSpec.
        levels: Category levels.
        params: Full LightGBM parameters.
        folds: Folds over ``frame``'s rows.
        dataset: ``cv_dataset`` of ``frame`` if already built.
    """
    dataset = dataset or cv_dataset(frame, spec, levels, params)
    rounds, score, boosters, _ = cross_validate(params, dataset, folds)
    matrix = encode_features(frame, spec, levels)
    rows, raw = [], []
    for (_, valid), booster in zip(folds.pairs, boosters.boosters, strict=True):
        rows.append(valid)
        raw.append(booster.predict(matrix[valid], num_iteration=rounds, raw_score=True))
    order = np.argsort(np.concatenate(rows), kind="stable")
    return CrossFit(
        rounds=rounds,
        score=score,
        oof_rows=np.concatenate(rows)[order],
        oof_raw=np.concatenate(raw)[order],
    )


def refit(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    params: dict[str, Any],
    rounds: int,
) -> lgb.Booster:
    """The booster trained on every row with the chosen parameters and rounds."""
    dataset = lgb_dataset(frame, spec, levels, params=params)
    return lgb.train(params, dataset, num_boost_round=rounds)


def label_times(frame: pd.DataFrame) -> np.ndarray | None:
    """The rows' label times (``as_of``) when every row has one, else None."""
    if AS_OF in frame.columns and bool(frame[AS_OF].notna().all()):
        return frame[AS_OF].to_numpy()
    return None


@dataclass(frozen=True)
class FittedModel:
    """A scorer fit by the recipe, with what the cross-validation measured on the way.

    Attributes:
        scorer: Booster refit on every row, calibrated on the out-of-fold scores.
        crossfit: The cross-validation (rounds, mean validation PR-AUC, out-of-fold scores).
        rows: Rows it was fit on.
        positives: Positive labels among them.
    """

    scorer: CounterfeitScorer
    crossfit: CrossFit
    rows: int
    positives: int


def fit_model(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    params: dict[str, Any],
    folds: Folds,
    sigmoid_below_positives: int,
) -> FittedModel:
    """The recipe: cross-validate, calibrate on out-of-fold scores, refit on every row.

    Args:
        frame: Labelled rows (``spec`` columns and ``is_counterfeit``).
        spec: FeatureSpec.
        params: Full LightGBM parameters (``fixed_params`` and tuned ones).
        folds: Folds over ``frame``'s rows.
        sigmoid_below_positives: Calibrate with a sigmoid below this many out-of-fold
            positives (``training.calibration``).
    """
    levels = category_levels(frame, spec)
    crossfitted = cross_fit(frame, spec, levels, params, folds)
    y = frame[LABEL].to_numpy(dtype="int64")
    calibrator = fit_calibrator(
        crossfitted.oof_raw, y[crossfitted.oof_rows], sigmoid_below_positives
    )
    booster = refit(frame, spec, levels, params, crossfitted.rounds)
    # What is normal, for the reasons: every feature among the genuine rows it trained on.
    genuine = encode_features(frame[y == 0], spec, levels)
    reference = fit_reference(genuine, spec)
    scorer = CounterfeitScorer.from_parts(booster, calibrator, spec, levels, reference)
    return FittedModel(scorer, crossfitted, len(frame), int(y.sum()))
