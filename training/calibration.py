"""Calibrate raw booster log-odds into probabilities on held-out labels.

The fitted calibrator is plain JSON (see ``features.scoring.model.apply_calibrator``) so
serving applies it with numpy alone. Isotonic regression needs many positives to be stable;
with few, a two-parameter sigmoid (Platt scaling) overfits far less.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Isotonic calibrator as interpolation thresholds (``np.interp`` reproduces it)."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return {
        "method": "isotonic",
        "x": [float(v) for v in iso.X_thresholds_],
        "y": [float(v) for v in iso.y_thresholds_],
    }


def fit_sigmoid(raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Platt scaling: p = 1 / (1 + exp(-(a * raw + b))), fit without regularisation."""
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(raw).reshape(-1, 1), y)
    return {"method": "sigmoid", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def fit_calibrator(raw: np.ndarray, y: np.ndarray, sigmoid_below_positives: int) -> dict[str, Any]:
    """Fit the calibrator on held-out rows: isotonic, or sigmoid when positives are few.

    Args:
        raw: Raw booster log-odds of held-out rows.
        y: Their 0/1 labels.
        sigmoid_below_positives: Use sigmoid when the rows hold fewer positives than this.

    Returns:
        Calibrator JSON data, with ``fit_rows`` and ``fit_positives`` recorded.
    """
    raw = np.asarray(raw, dtype="float64")
    y = np.asarray(y, dtype="int64")
    positives = int(y.sum())
    if positives < sigmoid_below_positives:
        calibrator = fit_sigmoid(raw, y)
    else:
        calibrator = fit_isotonic(raw, y)
    return {**calibrator, "fit_rows": len(y), "fit_positives": positives}
