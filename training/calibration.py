"""Calibrate raw booster log-odds into probabilities that keep the booster's ranking.

The fitted calibrator is plain JSON (``features.scoring.calibrator``) so serving applies it
with numpy alone. It is fitted on out-of-fold predictions (``training.crossfit``), so every
labelled row that a fold held out counts.

Plain isotonic regression is a step function: it merges whole ranges of raw scores into one
probability (ties at the top of the queue) and loses ranking quality. Here the isotonic fit
is *centred*: its points are the midpoints of the flat blocks, joined by straight lines,
so the curve rises between blocks; and a tiny strictly increasing term (weight ``TIEBREAK``)
keeps scores distinct where the curve is flat (beyond the fitted range) or a sigmoid rounds
to 1.0. The calibrated score is then a strictly increasing function of the raw score: the
same order, the same ROC-AUC and PR-AUC. With few positives a two-parameter sigmoid (Platt
scaling) overfits far less than isotonic regression.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

# Weight of the strictly increasing tie-break term: calibration moves by at most this much.
TIEBREAK = 1e-3


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Centred isotonic calibrator: the flat blocks' midpoints, joined by straight lines.

    The end points stay at the fitted range's ends so the curve covers the whole range.
    """
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    x = np.asarray(iso.X_thresholds_, dtype="float64")
    p = np.asarray(iso.y_thresholds_, dtype="float64")
    # sklearn returns each block's two ends; group the points of equal value into blocks.
    starts = np.flatnonzero(np.r_[True, np.diff(p) != 0])
    ends = np.r_[starts[1:], len(p)] - 1
    centres = (x[starts] + x[ends]) / 2.0
    centres[0], centres[-1] = x[0], x[-1]
    values = p[starts]
    if len(values) > 1:
        # Strictly increasing end points only when the extreme blocks are single points.
        keep = np.r_[True, np.diff(centres) > 0]
        centres, values = centres[keep], values[keep]
    return {"method": "isotonic", "x": centres.tolist(), "y": values.tolist()}


def fit_sigmoid(raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Platt scaling: p = 1 / (1 + exp(-(a * raw + b))), fit without regularisation."""
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(raw).reshape(-1, 1), y)
    return {"method": "sigmoid", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def fit_calibrator(raw: np.ndarray, y: np.ndarray, sigmoid_below_positives: int) -> dict[str, Any]:
    """Fit the calibrator on held-out (out-of-fold) rows.

    Args:
        raw: Raw booster log-odds of rows the scoring booster did not train on.
        y: Their 0/1 labels.
        sigmoid_below_positives: Use a sigmoid when the rows hold fewer positives than this.

    Returns:
        Calibrator JSON data (centred isotonic or sigmoid, with the tie-break term), with
        ``fit_rows`` and ``fit_positives`` recorded.
    """
    raw = np.asarray(raw, dtype="float64")
    y = np.asarray(y, dtype="int64")
    positives = int(y.sum())
    if positives < sigmoid_below_positives:
        calibrator = fit_sigmoid(raw, y)
    else:
        calibrator = fit_isotonic(raw, y)
    scale = float(np.std(raw)) or 1.0
    tiebreak = {"weight": TIEBREAK, "centre": float(np.median(raw)), "scale": scale}
    return {**calibrator, "tiebreak": tiebreak, "fit_rows": len(y), "fit_positives": positives}
