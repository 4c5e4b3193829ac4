"""A short Markdown model card logged with every trained model."""

from __future__ import annotations

import math

import pandas as pd

CARD_METRICS = (
    "roc_auc",
    "pr_auc",
    "precision_at_1pct",
    "recall_at_1pct",
    "precision_at_budget",
    "recall_at_budget",
    "brier",
    "ece",
)
TRUTH_METRICS = (
    "roc_auc",
    "pr_auc",
    "precision_at_100",
    "precision_at_500",
    "precision_at_1000",
    "brier",
    "ece",
)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4f}"
    return "–" if value is None else str(value)


def metrics_table(
    metrics: dict[str, dict[str, float]], rows: tuple[str, ...] = CARD_METRICS
) -> str:
    """Markdown table: one row per metric, one column per scorer (model and baselines)."""
    names = list(metrics)
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for metric in rows:
        if any(metric in m for m in metrics.values()):
            cells = [_fmt(metrics[n].get(metric)) for n in names]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _selection(recipe: dict[str, object]) -> str:
    scores = recipe.get("feature_selection_cv_pr_auc") or {}
    if not scores:
        return ""
    listed = "; ".join(f"{name} {value:.4f}" for name, value in scores.items())
    return f", chosen by cross-validated PR-AUC over the development labels ({listed})"


def render(
    *,
    model_name: str,
    version: str,
    run_id: str,
    data: dict[str, object],
    split: dict[str, object],
    recipe: dict[str, object],
    calibration: str,
    metrics: dict[str, dict[str, float]],
    truth_metrics: dict[str, dict[str, float]] | None,
    importance: pd.DataFrame,
    params: dict[str, object],
    notes: list[str],
) -> str:
    """Render the model card.

    Args:
        model_name: Registered model name.
        version: Registered version.
        run_id: MLflow run that trained it.
        data: Source, digest, rows, positives and positive share of the training table.
        split: ``Split.describe()`` output.
        recipe: How the models were made (``training.train._recipe``).
        calibration: Calibration method.
        metrics: Holdout metrics per scorer (``model``, baselines).
        truth_metrics: Metrics against the truth of a synthetic marketplace, or None.
        importance: Feature importance, highest gain first.
        params: Final LightGBM parameters.
        notes: Extra remarks (skipped baselines, warnings about the data, etc.).

    Returns:
        Markdown text.
    """
    top = ", ".join(f"`{f}`" for f in importance["feature"].head(10))
    split_lines = "\n".join(f"- {k}: {v}" for k, v in split.items())
    data_lines = "\n".join(f"- {k}: {v}" for k, v in data.items())
    param_lines = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))
    note_lines = "\n".join(f"- {n}" for n in notes) or "- none"
    folds = recipe["folds"]
    truth = ""
    if truth_metrics:
        model = truth_metrics["model"]
        truth = f"""
## Against the truth (synthetic marketplace)
Every store not labelled before the test period ({int(model["rows"]):,} stores,
{int(model["positives"]):,} truly counterfeit), scored by the same model as the holdout:

{metrics_table(truth_metrics, TRUTH_METRICS)}

Mean score {model["mean_score"]:.4f} against a true rate of {model["true_rate"]:.4f}: the
probability is calibrated for stores like the labelled ones, not for the marketplace.
"""
    return f"""# Model card: {model_name} v{version}

Calibrated probability that an online store sells counterfeit goods, with SHAP reasons.
Trained in MLflow run `{run_id}`.

## Intended use
Rank stores for spot-checks (test buys) and explain each score to reviewers. Use the score to
order and budget checks, not as proof: every flagged store still needs a test buy or a human
review.

**What the probability means.** It is calibrated ({calibration}) on out-of-fold scores of
the labelled stores, so it is the chance that a store *like the labelled ones* sells
counterfeits: {data["positive share"]} of the labelled stores are counterfeit, a far higher
share than among all stores, because labels come from complaints and targeted checks. Read it
as a ranking with a scale for checked-looking stores, not as the marketplace's base rate.

## Data
{data_lines}

## Split (time-aware when labels carry a time: the holdout is the most recent period)
{split_lines}

## How it was made
- Features: {recipe["features"]}{_selection(recipe)}.
- Tuning: {recipe["tuning"]}.
- Rounds: {recipe["rounds"]}, chosen by {folds["cv_folds"]}-fold {folds["cv_method"]}
  cross-validation over all {recipe["fit_rows"]} labels (mean validation PR-AUC
  {_fmt(recipe["cv_pr_auc"])}); the registered booster is refit on all of them.
- Calibration: fitted on {recipe["calibration_rows"]} out-of-fold scores; strictly increasing
  in the raw score, so the score keeps the booster's ranking.
- The holdout figures below come from the same recipe fit without the holdout
  ({recipe["development_rounds"]} rounds).
- LightGBM parameters: {param_lines}

## Holdout metrics, model against baselines
{metrics_table(metrics)}

Share budgets (0.5/1/2% of the holdout) appear only where they cover at least 20 stores;
`budget` is the absolute `--budget`.
{truth}
## Top features (gain)
{top}

## Limitations
- Labels come from spot-checks, complaints and rights holders, not a random sample: stores
  unlike any checked so far are scored with little evidence.
- Counterfeiters adapt; retrain when new test-buy results arrive and watch the per-category
  slices, which can be small.
- Link features count only labels known before each label's time; scores depend on how
  complete the store-link data is.

## Notes
{note_lines}
"""
