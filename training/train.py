"""The training job: data -> split -> tune -> fit -> calibrate -> evaluate -> log -> register.

Everything that can reject the input runs before the MLflow run starts, and the tracking
store is checked before anything else, so bad input or an unreachable server fails in
seconds and registers nothing. Once the run has started, any error ends it FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from features.scoring.calibrator import apply_calibrator
from features.scoring.encoding import category_levels, encode_features
from features.scoring.model import CounterfeitScorer
from features.tracking import CHALLENGER_ALIAS, connect
from training import baselines, calibration, model_card, plots, registry, tracking, tune
from training.dataset import (
    LABEL,
    Split,
    TrainingData,
    TrainingDataError,
    load_histories,
    load_own_data,
    split,
)
from training.evaluate import evaluate_probabilities, ranking_metrics, slice_metric_dict
from training.evaluate import slice_metrics as compute_slices
from training.model import binned_datasets, fit_booster, fixed_params
from training.settings import Settings, load_settings

SLICE_COLUMN = "category"
DEFAULT_BUDGET = 50


@dataclass(frozen=True)
class TrainRequest:
    """What to train on and how (the ``spotcheck train`` options).

    Exactly one input: ``histories``, or ``features`` + ``labels`` (+ ``links``).
    """

    histories: Path | None = None
    features: Path | None = None
    labels: Path | None = None
    links: Path | None = None
    price_column: str | None = None
    trials: int = 20
    timeout: float | None = None
    experiment: str | None = None
    model_name: str | None = None
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None
    budget: int = DEFAULT_BUDGET
    n_jobs: int = 1


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced (``--json`` prints this)."""

    run_id: str
    model_name: str
    version: str
    model_uri: str
    metrics: dict[str, dict[str, float]]
    beats_baselines: bool
    split: dict[str, Any]
    calibration: str
    study_name: str
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (NaN metrics become None so the JSON is standard)."""
        metrics = {
            who: {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in m.items()}
            for who, m in self.metrics.items()
        }
        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "version": self.version,
            "model_uri": self.model_uri,
            "alias": CHALLENGER_ALIAS,
            "holdout_metrics": metrics,
            "beats_baselines": self.beats_baselines,
            "split": self.split,
            "calibration": self.calibration,
            "study_name": self.study_name,
            "params": self.params,
            "notes": self.notes,
        }


def load_data(request: TrainRequest) -> TrainingData:
    """Load the training table from whichever input the request names."""
    if request.histories is not None:
        if request.features is not None or request.labels is not None:
            raise TrainingDataError("train on histories or on features with labels, not both")
        return load_histories(request.histories)
    if request.features is None or request.labels is None:
        raise TrainingDataError("train on histories, or on features with their labels")
    return load_own_data(request.features, request.labels, request.links, request.price_column)


@dataclass
class _Fitted:
    scorer: CounterfeitScorer
    tuned: tune.TuneResult


def _fit(
    data: TrainingData,
    parts: Split,
    request: TrainRequest,
    settings: Settings,
    client: MlflowClient,
    run_id: str,
) -> _Fitted:
    """Tune, refit the best configuration and calibrate it on the validation period."""
    levels = category_levels(parts.train, data.spec)
    experiment_id = client.get_run(run_id).info.experiment_id
    config = tune.TuneConfig(
        seed=request.seed,
        trials=request.trials,
        timeout=request.timeout,
        storage=request.storage or settings.study_storage,
        study_name=request.study_name
        or tune.study_name(request.experiment or settings.experiment, data.digest),
        num_threads=settings.num_threads,
        n_jobs=request.n_jobs,
    )
    tuned = tune.tune(parts, data.spec, levels, config, client, experiment_id, run_id)
    fixed = fixed_params(request.seed, settings.num_threads)
    train_set, validation_set = binned_datasets(
        parts.train, parts.validation, data.spec, levels, fixed
    )
    booster, _ = fit_booster({**fixed, **tuned.params}, train_set, validation_set)
    raw_validation = booster.predict(
        encode_features(parts.validation, data.spec, levels), raw_score=True
    )
    calibrator = calibration.fit_calibrator(
        raw_validation, parts.validation[LABEL].to_numpy(), settings.sigmoid_below_positives
    )
    scorer = CounterfeitScorer.from_parts(booster, calibrator, data.spec, levels)
    mlflow.log_params({f"lgb.{k}": v for k, v in tuned.params.items()})
    # Same data, seed and thread count give identical predictions; the count is part of it.
    mlflow.log_param("lgb.num_threads", settings.num_threads)
    mlflow.set_tag("optuna.study_name", tuned.study_name)
    return _Fitted(scorer, tuned)


def _baseline_scores(
    data: TrainingData, parts: Split, seed: int, notes: list[str]
) -> dict[str, np.ndarray]:
    """Test-set scores of the price rule (if a price column exists) and the logistic model."""
    scores = {}
    if data.price_column is not None:
        scores[baselines.PRICE_RULE] = baselines.price_rule_scores(parts.test, data.price_column)
    else:
        notes.append(
            "price-rule baseline skipped: no price_to_reference_median column; name a price column "
            "to run it"
        )
    # Same training rows as the booster (which keeps the validation period for early
    # stopping, tuning and calibration), same test set: the comparison is like for like.
    logistic = baselines.fit_logistic(parts.train, data.spec, seed)
    scores[baselines.LOGISTIC] = baselines.logistic_scores(logistic, parts.test, data.spec)
    return scores


def _evaluate(
    fitted: _Fitted, parts: Split, baseline_scores: dict[str, np.ndarray], budget: int
) -> tuple[dict[str, dict[str, float]], np.ndarray, np.ndarray, pd.DataFrame | None]:
    y = parts.test[LABEL].to_numpy()
    raw = fitted.scorer.raw_scores(parts.test)
    probability = apply_calibrator(fitted.scorer.calibrator_, raw)
    metrics = {"model": evaluate_probabilities(y, raw, probability, budget)}
    for name, scores in baseline_scores.items():
        metrics[name] = ranking_metrics(y, scores, budget)
    slices = None
    if SLICE_COLUMN in parts.test.columns:
        slices = compute_slices(parts.test[SLICE_COLUMN], y, raw, probability)
    return metrics, raw, probability, slices


def _log_reports(
    fitted: _Fitted,
    data: TrainingData,
    parts: Split,
    metrics: dict[str, dict[str, float]],
    scores: dict[str, np.ndarray],
    probability: np.ndarray,
    slices: pd.DataFrame | None,
) -> pd.DataFrame:
    """Log metrics, curves, importance, SHAP summary and the holdout; return importance."""
    for who, values in metrics.items():
        tracking.log_metrics({f"{who}.{k}": v for k, v in values.items()})
    if slices is not None:
        tracking.log_metrics(slice_metric_dict(slices, SLICE_COLUMN))
        mlflow.log_table(slices, "metrics/category_slices.json")
    y = parts.test[LABEL].to_numpy()
    booster = fitted.scorer.booster_
    importance = plots.importance_frame(booster)
    logistic_p = {baselines.LOGISTIC: scores[baselines.LOGISTIC]}
    figures = {
        "plots/pr_curve.png": plots.pr_curves(y, scores),
        "plots/calibration_curve.png": plots.calibration_curves(
            y, {"model": probability, **logistic_p}
        ),
        "plots/feature_importance.png": plots.importance_chart(importance),
        "plots/shap_summary.png": plots.shap_beeswarm(
            booster, data.frame, data.spec, fitted.scorer.levels_, fitted.tuned.seed
        ),
    }
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        plots.close(figure)
    mlflow.log_table(importance, "metrics/feature_importance.json")
    holdout = parts.test.copy()
    for name, values in scores.items():
        if name != "model":
            holdout[f"baseline_{name}"] = values
    tracking.log_frame(holdout, tracking.HOLDOUT_ARTIFACT)
    return importance


def _beats(metrics: dict[str, dict[str, float]]) -> bool:
    mine = metrics["model"]["pr_auc"]
    return all(mine > m["pr_auc"] for who, m in metrics.items() if who != "model")


def _log_setup(data: TrainingData, parts: Split, request: TrainRequest) -> None:
    tracking.log_dataset(data.frame, _source_path(request), data.digest, "labelled-stores")
    tracking.log_spec(data.spec)
    mlflow.set_tag("data.source_detail", data.source)
    mlflow.log_params(
        {
            "seed": request.seed,
            "trials": request.trials,
            "timeout": request.timeout,
            "budget": request.budget,
            "price_column": data.price_column,
            "n_features": len(data.spec),
            **{f"split.{k}": v for k, v in parts.describe().items()},
        }
    )


def _source_path(request: TrainRequest) -> str:
    source = request.histories if request.histories is not None else request.features
    return str(Path(source).resolve())


def train(request: TrainRequest, settings: Settings | None = None) -> TrainResult:
    """Run the whole training job and register the model as ``@challenger``.

    Args:
        request: Inputs and options.
        settings: Defaults (read from the environment when None).

    Returns:
        Run id, registered version and URI, and test metrics of the model and baselines.

    Raises:
        TrackingError: The tracking store is unreachable (checked first).
        TrainingDataError: Unusable input (checked before the run starts).
    """
    settings = settings or load_settings()
    client = connect(settings.tracking_uri)
    data = load_data(request)
    parts = split(data, request.seed, settings)
    model_name = request.model_name or settings.model_name
    notes: list[str] = []
    tags = {**tracking.git_commit(), "spotcheck.kind": "training", "data.digest": data.digest}
    experiment = request.experiment or settings.experiment
    with tracking.training_run(experiment, f"train-seed{request.seed}", tags) as run_id:
        _log_setup(data, parts, request)
        fitted = _fit(data, parts, request, settings, client, run_id)
        scores = _baseline_scores(data, parts, request.seed, notes)
        metrics, raw, probability, slices = _evaluate(fitted, parts, scores, request.budget)
        importance = _log_reports(
            fitted, data, parts, metrics, {"model": raw, **scores}, probability, slices
        )
        version = _log_and_register(client, fitted, data, metrics, model_name, run_id)
        mlflow.log_text(
            _card(fitted, data, parts, metrics, importance, model_name, version, notes),
            "model_card.md",
        )
    return TrainResult(
        run_id=run_id,
        model_name=model_name,
        version=version,
        model_uri=f"models:/{model_name}/{version}",
        metrics=metrics,
        beats_baselines=_beats(metrics),
        split=parts.describe(),
        calibration=fitted.scorer.calibrator_["method"],
        study_name=fitted.tuned.study_name,
        params=fitted.tuned.params,
        notes=notes,
    )


def _log_and_register(
    client: MlflowClient,
    fitted: _Fitted,
    data: TrainingData,
    metrics: dict[str, dict[str, float]],
    model_name: str,
    run_id: str,
) -> str:
    """Log the scoring model and register it as a new ``@challenger`` version."""
    beats = str(_beats(metrics)).lower()
    method = fitted.scorer.calibrator_["method"]
    mlflow.set_tags({"beats_baselines": beats, "calibration.method": method})
    info = tracking.log_scoring_model(
        fitted.scorer, data.frame.head(5), {"calibration": method, "data_digest": data.digest}
    )
    version = registry.register(
        client,
        info.model_uri,
        model_name,
        {
            "run_id": run_id,
            "data.digest": data.digest,
            "feature_spec.hash": data.spec.hash,
            "test.pr_auc": f"{metrics['model']['pr_auc']:.6f}",
            "test.ece": f"{metrics['model']['ece']:.6f}",
            "beats_baselines": beats,
        },
    )
    return str(version.version)


def _card(
    fitted: _Fitted,
    data: TrainingData,
    parts: Split,
    metrics: dict[str, dict[str, float]],
    importance: pd.DataFrame,
    model_name: str,
    version: str,
    notes: list[str],
) -> str:
    """The model card's Markdown."""
    if notes:
        mlflow.set_tag("notes", " | ".join(notes))
    return model_card.render(
        model_name=model_name,
        version=version,
        run_id=mlflow.active_run().info.run_id,
        data={
            "source": data.source,
            "digest": data.digest,
            "rows": len(data.frame),
            "positives": int(data.frame[LABEL].sum()),
            "features": len(data.spec),
        },
        split=parts.describe(),
        calibration=fitted.scorer.calibrator_["method"],
        metrics=metrics,
        importance=importance,
        params=fitted.tuned.params,
        notes=notes,
    )
