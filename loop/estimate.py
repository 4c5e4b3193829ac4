"""Inverse-probability (Horvitz-Thompson) estimates from test-buys with recorded chances.

A month's buys by the model policy are its certain picks (probability 1) and exploration
picks drawn in strata (``serving.queue``: the budget edge, the score-weighted rest), each
with its inclusion probability. Any total over the candidates, such as how many of them
sell fakes or how many of the model's whole budget do, is estimated without bias by
weighing every bought store by one over its probability. The variance is the with-
replacement (Hansen-Hurwitz) approximation within each stratum, with the finite-population
correction of the stratum's mean sampling rate. A stratum of few draws that all came back
alike would claim no uncertainty at all, so its variance is at least that of a stratum whose
counterfeit rate is the Jeffreys estimate ``(found + 0.5) / (draws + 1)``; that is the
difference between an interval that holds the truth and one that only looks precise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """An estimated total and its approximate variance."""

    total: float
    variance: float

    def interval(self, scale: float = 1.0) -> tuple[float, float]:
        """The approximate 95% normal interval of ``total / scale``.

        Not cut to the range the bought labels allow: test-buy labels are wrong now and
        then, so the truth can lie outside it.
        """
        half = Z_95 * np.sqrt(self.variance)
        return (self.total - half) / scale, (self.total + half) / scale


def ht_total(
    picks: pd.DataFrame, values: np.ndarray, strata: tuple[str, ...] | None = None
) -> Estimate:
    """Horvitz-Thompson estimate of the candidates' total of 0/1 ``values``.

    Args:
        picks: One month's buys of one policy: ``selection_probability`` and ``stratum``
            (``certain`` picks are counted as they are).
        values: The value of each bought store (a label, or a label times a membership).
        strata: The strata the stores with a value can be in (default: all); the others
            add no variance (their stores' values are 0 by construction).

    Returns:
        The estimated total and its approximate variance.
    """
    values = np.asarray(values, dtype="float64")
    probability = picks["selection_probability"].to_numpy(dtype="float64")
    stratum_of = picks["stratum"].to_numpy()
    if (probability <= 0).any():
        raise ValueError("a bought store has selection probability 0: the draw is not recorded")
    variance = 0.0
    for stratum in np.unique(stratum_of) if strata is None else strata:
        inside = stratum_of == stratum
        if not inside.any() or (probability[inside] >= 1.0).all():
            continue  # taken for certain (or not drawn at all): no sampling error
        variance += stratum_variance(values[inside], probability[inside])
    return Estimate(float((values / probability).sum()), variance)


def stratum_variance(values: np.ndarray, probability: np.ndarray) -> float:
    """Variance of one stratum's estimated total of 0/1 ``values`` drawn with ``probability``.

    The Hansen-Hurwitz estimate, floored at the variance of a simple random sample with the
    stratum's mean weight and the Jeffreys rate; both carry the finite-population correction.
    """
    n = len(values)
    weighted = values / probability
    correction = 1.0 - probability.mean()
    rate = (values.sum() + 0.5) / (n + 1)
    floor = (1.0 / probability).mean() ** 2 * n * rate * (1 - rate) * correction
    if n < 2:
        return float(floor)
    total = weighted.sum()
    spread = ((n * weighted - total) ** 2).sum() / (n * (n - 1)) * correction
    return float(max(spread, floor))
