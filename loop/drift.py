"""Drift between two feature tables: the score distribution, every feature, the top reasons.

A team compares this month's feature table with the one the model was trained on (or last
month's). Three views:

* the population stability index (PSI) of the model's scores, on ten bins cut at the
  reference's score deciles (0.1 warns, 0.25 alerts: the usual credit-scoring rule);
* every feature: its PSI, and a two-sample test (Kolmogorov-Smirnov for numbers, chi-square
  for categories and flags) whose p-values are corrected for testing every feature at once
  (Benjamini-Hochberg); a feature drifts when its q-value is under ``alpha`` and its PSI at
  least the warning level (with tens of thousands of stores every test is significant, so
  the PSI says whether the shift is large enough to matter). Features are ranked by their
  share of the model's attributions (mean |SHAP| on the current table): a drifting feature the
  model leans on matters more than one it ignores;
* the top reasons of the riskiest stores (the queue's head): which features lead them now
  against then.

With labels, the same feature comparison among the stores labelled counterfeit in each
table: that is where counterfeiters adapting (raising prices, dressing up storefronts)
shows, while the whole population hardly moves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.spec import KEY
from loop import LoopError

if TYPE_CHECKING:
    from features.scoring.model import CounterfeitScorer
    from features.spec import FeatureSpec

MISSING_BIN = "(missing)"


@dataclass(frozen=True)
class DriftThresholds:
    """When drift warns and alerts.

    Attributes:
        psi_warn: PSI from which a shift is worth a look.
        psi_alert: PSI from which a shift needs action.
        alpha: False-discovery rate of the per-feature tests (Benjamini-Hochberg).
        queue: Riskiest stores whose top reasons are compared.
        sample: Rows of the current table the attributions are computed on at most.
        seed: Seed of that sample.
    """

    psi_warn: float = 0.1
    psi_alert: float = 0.25
    alpha: float = 0.05
    queue: int = 100
    sample: int = 20000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.psi_warn <= self.psi_alert:
            raise LoopError(
                f"need 0 < psi-warn <= psi-alert, got {self.psi_warn}, {self.psi_alert}"
            )
        if not 0 < self.alpha < 1:
            raise LoopError(f"alpha must lie in (0, 1), got {self.alpha}")

    def level(self, value: float) -> str:
        """``ok``, ``warn`` or ``alert`` for a PSI."""
        if value >= self.psi_alert:
            return "alert"
        return "warn" if value >= self.psi_warn else "ok"


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of numbers, bins cut at the reference's quantiles.

    Missing values form a bin of their own; empty bins get a share of 1e-4 so the index
    stays finite.
    """
    reference = np.asarray(reference, dtype="float64")
    current = np.asarray(current, dtype="float64")
    known = reference[~np.isnan(reference)]
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1])) if len(known) else []

    def shares(values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"),
                             minlength=len(edges) + 1)  # fmt: skip
        return np.append(counts, missing.sum()) / max(len(values), 1)

    return _index(shares(reference), shares(current))


def category_psi(reference: pd.Series, current: pd.Series) -> float:
    """Population stability index of categories (missing is a category)."""
    ref = (
        reference.astype(object).where(reference.notna(), MISSING_BIN).value_counts(normalize=True)
    )
    cur = current.astype(object).where(current.notna(), MISSING_BIN).value_counts(normalize=True)
    levels = ref.index.union(cur.index)
    return _index(ref.reindex(levels, fill_value=0).to_numpy(),
                  cur.reindex(levels, fill_value=0).to_numpy())  # fmt: skip


def _index(ref: np.ndarray, cur: np.ndarray) -> float:
    ref, cur = np.maximum(ref, 1e-4), np.maximum(cur, 1e-4)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (the false-discovery rate at which each test is rejected)."""
    p = np.asarray(p_values, dtype="float64")
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec,
                  thresholds: DriftThresholds) -> pd.DataFrame:  # fmt: skip
    """Per feature: PSI, test, p-value, q-value, level and whether it drifts."""
    from scipy import stats

    rows = []
    for feature in spec:
        ref, cur = reference[feature.name], current[feature.name]
        if feature.dtype == "category" or feature.dtype == "bool":
            value = category_psi(ref, cur)
            table = pd.crosstab(
                np.r_[np.zeros(len(ref)), np.ones(len(cur))],
                pd.concat([ref, cur]).astype(object).fillna(MISSING_BIN).astype(str).to_numpy(),
            )
            p = stats.chi2_contingency(table)[1] if table.shape[1] > 1 else 1.0
            test = "chi-square"
        else:
            a = pd.to_numeric(ref, errors="coerce").to_numpy(dtype="float64")
            b = pd.to_numeric(cur, errors="coerce").to_numpy(dtype="float64")
            value = psi(a, b)
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            p = stats.ks_2samp(a, b).pvalue if len(a) and len(b) else 1.0
            test = "kolmogorov-smirnov"
        rows.append({"feature": feature.name, "group": feature.group, "psi": value,
                     "test": test, "p_value": float(p)})  # fmt: skip
    table = pd.DataFrame(rows)
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    table["level"] = table["psi"].map(thresholds.level)
    table["drifts"] = (table["q_value"] < thresholds.alpha) & (table["psi"] >= thresholds.psi_warn)
    return table


def attribution_shares(scorer: CounterfeitScorer, frame: pd.DataFrame,
                       thresholds: DriftThresholds) -> pd.Series:  # fmt: skip
    """Each feature's share of the mean |SHAP| on (a sample of) ``frame``."""
    from features.scoring.encoding import encode_features

    if len(frame) > thresholds.sample:
        frame = frame.sample(thresholds.sample, random_state=thresholds.seed)
    matrix = encode_features(frame, scorer.spec, scorer.levels_)
    mean = np.abs(scorer.contributions(matrix)[:, :-1]).mean(axis=0)
    return pd.Series(mean / max(mean.sum(), 1e-12), index=list(scorer.spec.names))


def top_reasons(scored: pd.DataFrame, k: int) -> pd.Series:
    """Share of each feature as the first risk reason among the ``k`` riskiest stores."""
    head = scored.nlargest(k, "score")
    # score_frame gives the reasons as JSON text (the batch file's column type).
    parsed = [json.loads(r) if isinstance(r, str) else r for r in head["reasons"]]
    first = [r[0]["feature"] if len(r) else "(none)" for r in parsed]
    return pd.Series(first).value_counts(normalize=True)


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec,
                 thresholds: DriftThresholds, scorer: CounterfeitScorer | None = None,
                 counterfeit: set[str] | None = None,
                 cohort_days: int | None = None) -> dict:  # fmt: skip
    """Everything the drift page shows.

    Args:
        reference: The feature table to compare against (e.g. the training time's).
        current: This month's feature table.
        spec: Their FeatureSpec (the model's, when a model is given).
        thresholds: Warning and alert levels, test rate, queue length.
        scorer: The model, for the score PSI, attribution ranking and top reasons.
        counterfeit: Store ids labelled counterfeit, for the drift among them.
        cohort_days: Compare only the counterfeit stores opened in the last ``cohort_days``
            days before each table's time (``store_age_days``): new fronts show the
            counterfeiters' current habits, old ones their habits when they opened.

    Returns:
        ``status``, ``score_psi`` (None without a model), ``features`` (ranked table),
        ``reasons`` (top-reason shares then and now), ``counterfeit_features`` (or None).
    """
    features = feature_drift(reference, current, spec, thresholds)
    out: dict = {"score_psi": None, "reasons": None, "counterfeit_features": None}
    if scorer is not None:
        ref_scored = scorer.score_frame(reference, risk_k=1, mitigating_k=0)
        cur_scored = scorer.score_frame(current, risk_k=1, mitigating_k=0)
        out["score_psi"] = psi(ref_scored["score"].to_numpy(), cur_scored["score"].to_numpy())
        shares = attribution_shares(scorer, current, thresholds)
        features["attribution_share"] = features["feature"].map(shares).fillna(0.0)
        features = features.sort_values(["drifts", "attribution_share", "psi"],
                                        ascending=False, kind="stable")  # fmt: skip
        then, now = (top_reasons(s, thresholds.queue) for s in (ref_scored, cur_scored))
        reasons = pd.DataFrame({"reference_share": then, "current_share": now}).fillna(0.0)
        reasons["change"] = reasons["current_share"] - reasons["reference_share"]
        out["reasons"] = reasons.sort_values("change", key=np.abs, ascending=False)
    else:
        features = features.sort_values(["drifts", "psi"], ascending=False, kind="stable")
    out["features"] = features.reset_index(drop=True)
    if counterfeit:
        ref_cf = _cohort(reference[reference[KEY].astype(str).isin(counterfeit)], cohort_days)
        cur_cf = _cohort(current[current[KEY].astype(str).isin(counterfeit)], cohort_days)
        if len(ref_cf) >= 10 and len(cur_cf) >= 10:
            table = feature_drift(ref_cf, cur_cf, spec, thresholds)
            out["counterfeit_features"] = table.sort_values(
                ["drifts", "psi"], ascending=False, kind="stable"
            ).reset_index(drop=True)
            out["counterfeit_stores"] = (len(ref_cf), len(cur_cf))
    out["status"] = _status(out, thresholds)
    return out


def _cohort(frame: pd.DataFrame, days: int | None) -> pd.DataFrame:
    if not days:
        return frame
    if "store_age_days" not in frame.columns:
        raise LoopError("--cohort-days needs the store_age_days feature in both tables")
    return frame[pd.to_numeric(frame["store_age_days"], errors="coerce") <= days]


def _status(report: dict, thresholds: DriftThresholds) -> str:
    """The worst level among the score PSI and the drifting features' PSIs."""
    levels = ["ok"]
    if report["score_psi"] is not None:
        levels.append(thresholds.level(report["score_psi"]))
    for key in ("features", "counterfeit_features"):
        table = report.get(key)
        if table is not None:
            levels += table.loc[table["drifts"], "level"].tolist()
    return max(levels, key=["ok", "warn", "alert"].index)
