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


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4f}"
    return "–" if value is None else str(value)


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per metric, one column per scorer (model and baselines)."""
    names = list(metrics)
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for metric in CARD_METRICS:
        if any(metric in m for m in metrics.values()):
            cells = [_fmt(metrics[n].get(metric)) for n in names]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(
    *,
    model_name: str,
    version: str,
    run_id: str,
    data: dict[str, object],
    split: dict[str, object],
    calibration: str,
    metrics: dict[str, dict[str, float]],
    importance: pd.DataFrame,
    params: dict[str, object],
    notes: list[str],
) -> str:
    """Render the model card.

    Args:
        model_name: Registered model name.
        version: Registered version.
        run_id: MLflow run that trained it.
        data: Source, digest, rows and positives of the training table.
        split: ``Split.describe()`` output.
        calibration: Calibration method.
        metrics: Test metrics per scorer (``model``, baselines).
        importance: Feature importance, highest gain first.
        params: Final LightGBM parameters.
        notes: Extra remarks (skipped baselines, etc.).

    Returns:
        Markdown text.
    """
    top = ", ".join(f"`{f}`" for f in importance["feature"].head(10))
    split_lines = "\n".join(f"- {k}: {v}" for k, v in split.items())
    data_lines = "\n".join(f"- {k}: {v}" for k, v in data.items())
    param_lines = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))
    note_lines = "\n".join(f"- {n}" for n in notes) or "- none"
    return f"""# Model card: {model_name} v{version}

Calibrated probability that an online store sells counterfeit goods, with SHAP reasons.
Trained in MLflow run `{run_id}`.

## Intended use
Rank stores for spot-checks (test buys) and explain each score to reviewers. The score is a
probability calibrated on held-out labels ({calibration}); use it to order and budget
checks, not as proof: every flagged store still needs a test buy or a human review.

## Data
{data_lines}

## Split (time-aware when labels carry a time: the test set is the most recent period)
{split_lines}

## Test-set metrics, model against baselines
{metrics_table(metrics)}

Budgets are shares of the scored (test) stores; `budget` is the absolute `--budget`.

## Top features (gain)
{top}

## Training
LightGBM, Optuna-tuned on the validation period with early stopping: {param_lines}

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
