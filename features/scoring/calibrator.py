"""Raw booster log-odds to calibrated probabilities, from the calibrator's JSON form.

Forms (training fits them, ``training.calibration``; this is all a loaded model needs):

* ``{"method": "isotonic", "x": [...], "y": [...]}``: a non-decreasing curve through the
  points, applied with ``np.interp`` on the raw log-odds (flat outside ``x``);
* ``{"method": "sigmoid", "a": ..., "b": ...}``: Platt scaling, ``1 / (1 + exp(-(a raw + b)))``;
* either with ``"tiebreak": {"weight": w, "centre": c, "scale": s}``: the probability is
  ``(1 - w) * curve(raw) + w * (1/2 + arctan((raw - c) / s) / pi)``. The second term is
  strictly increasing and never saturates, so the score keeps every distinction the raw
  score makes (no ties where the curve is flat or a sigmoid rounds to 1.0), inside and
  beyond the range the curve was fitted on; ``w`` is small enough (1e-3) that calibration
  moves by at most ``w``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.scoring import ScoringError


def apply_calibrator(calibrator: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    """Map raw LightGBM log-odds to calibrated probabilities.

    Args:
        calibrator: The calibrator's JSON form (see the module docstring).
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
        curve = np.interp(raw, np.asarray(calibrator["x"]), np.asarray(calibrator["y"]))
    elif method == "sigmoid":
        curve = 1.0 / (1.0 + np.exp(-(calibrator["a"] * raw + calibrator["b"])))
    else:
        raise ScoringError(f"calibrator: unknown method {method!r}")
    tiebreak = calibrator.get("tiebreak")
    if not tiebreak:
        return curve
    weight = float(tiebreak["weight"])
    spread = 0.5 + np.arctan((raw - tiebreak["centre"]) / tiebreak["scale"]) / np.pi
    return (1.0 - weight) * curve + weight * spread
