"""Raw booster log-odds to calibrated probabilities, from the calibrator's JSON form.

``{"method": "isotonic", "x": [...], "y": [...]}`` is applied with ``np.interp`` on the raw
log-odds; ``{"method": "sigmoid", "a": ..., "b": ...}`` is Platt scaling. Training fits the
calibrator (``training.calibration``); this is all a loaded model needs to apply it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.scoring import ScoringError


def apply_calibrator(calibrator: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    """Map raw LightGBM log-odds to calibrated probabilities.

    Args:
        calibrator: ``{"method": "isotonic", "x", "y"}`` or ``{"method": "sigmoid", "a", "b"}``.
        raw: Raw scores (log-odds) from the booster.

    Returns:
        Probabilities in [0, 1].

    Raises:
        ScoringError: The calibrator's method is unknown.
    """
    raw = np.asarray(raw, dtype="float64")
    method = calibrator.get("method")
    if method == "isotonic":
        # np.interp clamps outside the fitted range, exactly like isotonic out_of_bounds="clip".
        return np.interp(raw, np.asarray(calibrator["x"]), np.asarray(calibrator["y"]))
    if method == "sigmoid":
        return 1.0 / (1.0 + np.exp(-(calibrator["a"] * raw + calibrator["b"])))
    raise ScoringError(f"calibrator: unknown method {method!r}")
