"""The training job: data, split, tune, cross-fit, calibrate, refit, evaluate, register.

The recipe (``training.crossfit``) uses every label: cross-validation folds that respect time
tune the parameters, pick the boosting rounds and yield the out-of-fold scores the
calibrator is fitted on; the booster is then refit on every row. It runs twice:

* on the development rows only, giving the model the holdout (the most recent labels) is
  measured on — the figures the run reports and the promotion gates use;
* on every labelled row, giving the model that is registered.

Tuning (when trials are asked for) cross-validates over the development rows only, so the
holdout never influences the parameters. Everything that can reject the input runs before
the MLflow run starts, and the tracking store is checked before anything else, so bad input
or an unreachable server fails in seconds and registers nothing. Once the run has started,
any error ends it FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from features.byo import LABEL
from features.scoring.encoding import category_levels
from features.spec import AS_OF, KEY, FeatureSpec
from features.tracking import CHALLENGER_ALIAS, connect
from training import baselines, model_card, plots, registry, tracking, truth, tune
from training.baselines import Baselines, fit_baselines
from training.crossfit import (
    FittedModel,
    Folds,
    cross_validate,
    cv_dataset,
    fit_model,
    label_times,
    make_folds,
)
from training.dataset import (
    Split,
    TrainingData,
    TrainingDataError,
    load_histories,
    load_own_data,
    split,
)
from training.evaluate import evaluate_probabilities, ranking_metrics, slice_metric_dict
from training.evaluate import slice_metrics as compute_slices
from training.model import default_params, fixed_params
from training.settings import Settings, load_settings

SLICE_COLUMN = "category"
DEFAULT_BUDGET = 50
DEPENDENCE_PLOTS = 4  # dependence plots of the top features by mean |SHAP|


@dataclass(frozen=True)
class TrainRequest:
    """What to train on and how (the ``spotcheck train`` options).

    Exactly one input: ``histories``, or ``features`` + ``labels`` (+ ``links``). ``truth``
    (synthetic data) is used for evaluation only: it never reaches fitting, tuning,
    calibration or the gates.
    """

    histories: Path | None = None
    features: Path | None = None
    labels: Path | None = None
    links: Path | None = None
    truth: Path | None = None
    price_column: str | None = None
    trials: int = 0
    timeout: float | None = None
    experiment: str | None = None
    model_name: str | None = None
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None
    resume: bool = False
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
    study_name: str | None
    params: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    truth_metrics: dict[str, dict[str, float]] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (NaN metrics become None so the JSON is standard)."""

        def clean(metrics: dict[str, dict[str, float]] | None) -> dict | None:
            if metrics is None:
                return None
            nan = lambda v: isinstance(v, float) and np.isnan(v)  # noqa: E731
            return {w: {k: None if nan(v) else v for k, v in m.items()} for w, m in metrics.items()}

        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "version": self.version,
            "model_uri": self.model_uri,
            "alias": CHALLENGER_ALIAS,
            "holdout_metrics": clean(self.metrics),
            "truth_metrics": clean(self.truth_metrics),
            "beats_baselines": self.beats_baselines,
            "split": self.split,
            "calibration": self.calibration,
            "study_name": self.study_name,
            "params": self.params,
            "recipe": self.recipe,
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


@dataclass(frozen=True)
class _Plan:
    """Everything decided before the run starts (so bad input fails before it)."""

    data: TrainingData
    parts: Split
    development_folds: Folds
    all_folds: Folds


@dataclass(frozen=True)
class _Selection:
    """The feature set the model uses, and the cross-validation it was chosen by."""

    spec: FeatureSpec
    name: str
    scores: dict[str, float]


def _select_features(plan: _Plan, seed: int, settings: Settings) -> _Selection:
    """Choose among the data's candidate feature sets by cross-validation (development rows).

    Each candidate is cross-validated with the default parameters over the development
    folds (the holdout never takes part). The smallest set whose mean validation PR-AUC is
    within one standard error of the best wins (the one-standard-error rule): on a few
    hundred labels, hundreds of neighbour aggregates can win a fold by chance and lose the
    test. Without candidates (histories: the FeatureSpec is fixed), every feature.
    """
    data = plan.data
    if not data.feature_sets:
        return _Selection(data.spec, "all", {})
    development = plan.parts.development
    params = {**fixed_params(seed, settings.num_threads, settings.max_depth), **default_params()}
    results = {}
    for name, columns in data.feature_sets:
        spec = data.spec.select(columns)
        dataset = cv_dataset(development, spec, category_levels(development, spec), params)
        results[name] = cross_validate(params, dataset, plan.development_folds)
    best = max(results.values(), key=lambda r: r.score)
    bar = best.score - best.standard_error
    name, columns = next((n, c) for n, c in data.feature_sets if results[n].score >= bar)
    scores = {n: r.score for n, r in results.items()}
    return _Selection(data.spec.select(columns), name, scores)


def _plan(request: TrainRequest, settings: Settings) -> _Plan:
    data = load_data(request)
    parts = split(data, request.seed, settings)
    development = parts.development
    return _Plan(
        data,
        parts,
        make_folds(development[LABEL].to_numpy(), label_times(development), request.seed),
        make_folds(data.frame[LABEL].to_numpy(), label_times(data.frame), request.seed),
    )


def _tune(
    plan: _Plan,
    spec: FeatureSpec,
    request: TrainRequest,
    settings: Settings,
    client: MlflowClient,
    run_id: str,
) -> tune.TuneResult | None:
    """Tune on the development rows by cross-validation, or None when no trials are asked."""
    if request.trials <= 0 and not (request.resume or request.study_name):
        return None
    experiment = request.experiment or settings.experiment
    name = request.study_name or tune.study_name(
        experiment, plan.data.digest, None if request.resume else run_id
    )
    config = tune.TuneConfig(
        seed=request.seed,
        trials=request.trials,
        timeout=request.timeout,
        storage=request.storage or settings.study_storage,
        study_name=name,
        num_threads=settings.num_threads,
        max_depth=settings.max_depth,
        n_jobs=request.n_jobs,
    )
    development = plan.parts.development
    levels = category_levels(development, spec)
    experiment_id = client.get_run(run_id).info.experiment_id
    return tune.tune(
        development,
        plan.development_folds,
        spec,
        levels,
        config,
        client,
        experiment_id,
        run_id,
    )


def _params(tuned: tune.TuneResult | None, seed: int, settings: Settings) -> dict[str, Any]:
    """The LightGBM parameters of both fits: tuned ones, or the defaults."""
    chosen = tuned.params if tuned is not None else default_params()
    return {**fixed_params(seed, settings.num_threads, settings.max_depth), **chosen}


def _baselines(data: TrainingData, parts: Split, seed: int, notes: list[str]) -> Baselines:
    """Both baselines, fit on the development rows like the model the holdout measures."""
    if data.price_column is None:
        notes.append(
            "price-rule baseline skipped: no price_to_reference_median column; name a price "
            "column to run it"
        )
    return fit_baselines(parts.development, data.spec, data.price_column, seed)


@dataclass(frozen=True)
class _Holdout:
    """The development model's scores on the holdout, and the metrics of every scorer."""

    raw: np.ndarray
    probability: np.ndarray
    metrics: dict[str, dict[str, float]]
    slices: pd.DataFrame | None


def _evaluate(
    development: FittedModel, parts: Split, baseline_scores: dict[str, np.ndarray], budget: int
) -> _Holdout:
    y = parts.test[LABEL].to_numpy()
    scored = development.scorer.score_frame(parts.test)
    raw, probability = scored["raw_score"].to_numpy(), scored["score"].to_numpy()
    metrics = {"model": evaluate_probabilities(y, probability, probability, budget)}
    for name, scores in baseline_scores.items():
        metrics[name] = ranking_metrics(y, scores, budget)
    slices = None
    if SLICE_COLUMN in parts.test.columns:
        slices = compute_slices(parts.test[SLICE_COLUMN], y, probability, probability)
    return _Holdout(raw, probability, metrics, slices)


def _log_reports(
    final: FittedModel,
    data: TrainingData,
    parts: Split,
    holdout: _Holdout,
    scores: dict[str, np.ndarray],
    seed: int,
) -> pd.DataFrame:
    """Log metrics, curves, importance, SHAP summary, the holdout and the training keys."""
    for who, values in holdout.metrics.items():
        tracking.log_metrics({f"{who}.{k}": v for k, v in values.items()})
    if holdout.slices is not None:
        tracking.log_metrics(slice_metric_dict(holdout.slices, SLICE_COLUMN))
        mlflow.log_table(holdout.slices, "metrics/category_slices.json")
    y = parts.test[LABEL].to_numpy()
    booster = final.scorer.booster_
    importance = plots.importance_frame(booster)
    logistic_p = {baselines.LOGISTIC: scores[baselines.LOGISTIC]}
    figures = {
        "plots/pr_curve.png": plots.pr_curves(y, {"model": holdout.probability, **scores}),
        "plots/calibration_curve.png": plots.calibration_curves(
            y, {"model": holdout.probability, **logistic_p}
        ),
        "plots/feature_importance.png": plots.importance_chart(importance),
    }
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        plots.close(figure)
    mlflow.log_table(importance, "metrics/feature_importance.json")
    _log_global_explanations(final, data, seed)
    frame = parts.test.copy()
    frame[registry.MODEL_RAW], frame[registry.MODEL_SCORE] = holdout.raw, holdout.probability
    for name, values in scores.items():
        frame[f"{registry.BASELINE_PREFIX}{name}"] = values
    tracking.log_frame(frame, tracking.HOLDOUT_ARTIFACT)
    keys = [c for c in (KEY, AS_OF) if c in data.frame.columns]
    tracking.log_frame(data.frame[keys], tracking.TRAINING_KEYS_ARTIFACT)
    return importance


def _log_global_explanations(final: FittedModel, data: TrainingData, seed: int) -> None:
    """SHAP beeswarm, dependence of the top features, group importance, genuine references."""
    scorer = final.scorer
    matrix, contributions = plots.shap_sample(
        scorer.booster_, data.frame, scorer.spec, scorer.levels_, seed
    )
    groups = plots.group_importance_frame(contributions, scorer.spec)
    figures = {
        "plots/shap_summary.png": plots.shap_beeswarm(matrix, contributions, scorer.spec),
        "plots/shap_group_importance.png": plots.group_importance_chart(groups),
    }
    for feature in plots.top_shap_features(contributions, scorer.spec, DEPENDENCE_PLOTS):
        figures[f"plots/shap_dependence/{feature}.png"] = plots.shap_dependence(
            matrix, contributions, scorer.spec, feature
        )
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        plots.close(figure)
    mlflow.log_table(groups, "explanations/group_importance.json")
    if scorer.reference_ is not None:
        # The values the reasons compare stores with ("genuine stores: 94%").
        mlflow.log_dict(scorer.reference_.to_dict(), "explanations/genuine_reference.json")
        table = pd.DataFrame(scorer.reference_.rows_for_people())
        mlflow.log_table(table, "explanations/genuine_reference_table.json")


def _beats(metrics: dict[str, dict[str, float]]) -> bool:
    mine = metrics["model"]["pr_auc"]
    return all(mine > m["pr_auc"] for who, m in metrics.items() if who != "model")


def _recipe(
    plan: _Plan,
    tuned: tune.TuneResult | None,
    development: FittedModel,
    final: FittedModel,
    selection: _Selection,
) -> dict[str, Any]:
    """How the models were made, for the run's parameters, the card and the JSON summary."""
    return {
        "features": f"{selection.name} ({len(selection.spec)} of {len(plan.data.spec)} columns)",
        "feature_selection_cv_pr_auc": selection.scores,
        "tuning": (
            f"{tuned.trials_run} Optuna trials this run ({tuned.trials_complete_total} complete "
            f"in the study), each scored by {plan.development_folds.method} cross-validation "
            f"over the {development.rows} development labels"
            if tuned is not None
            else "none: default parameters (pass --trials to tune by cross-validation)"
        ),
        "folds": plan.all_folds.describe(),
        "development_rounds": development.crossfit.rounds,
        "development_cv_pr_auc": development.crossfit.score,
        "rounds": final.crossfit.rounds,
        "cv_pr_auc": final.crossfit.score,
        "fit_rows": final.rows,
        "fit_positives": final.positives,
        "calibration_rows": len(final.crossfit.oof_rows),
    }


def _log_setup(data: TrainingData, parts: Split, request: TrainRequest) -> None:
    tracking.log_dataset(data.frame, _source_path(request), data.digest, "labelled-stores")
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
        Run id, registered version and URI, holdout (and truth) metrics of the model and
        the baselines, and how the model was made.

    Raises:
        TrackingError: The tracking store is unreachable (checked first).
        TrainingDataError: Unusable input (checked before the run starts).
    """
    settings = settings or load_settings()
    if request.truth is not None and request.histories is None:
        raise TrainingDataError(
            "the truth evaluates a synthetic marketplace: give it with histories"
        )
    client = connect(settings.tracking_uri)
    plan = _plan(request, settings)
    truth_labels = truth.read_truth(request.truth) if request.truth is not None else None
    data, parts = plan.data, plan.parts
    model_name = request.model_name or settings.model_name
    notes: list[str] = list(data.notes)
    tags = {**tracking.git_commit(), "spotcheck.kind": "training", "data.digest": data.digest}
    experiment = request.experiment or settings.experiment
    with tracking.training_run(experiment, f"train-seed{request.seed}", tags) as run_id:
        _log_setup(data, parts, request)
        selection = _select_features(plan, request.seed, settings)
        spec = selection.spec
        tracking.log_spec(spec)
        tuned = _tune(plan, spec, request, settings, client, run_id)
        params = _params(tuned, request.seed, settings)
        below = settings.sigmoid_below_positives
        development = fit_model(parts.development, spec, params, plan.development_folds, below)
        final = fit_model(data.frame, spec, params, plan.all_folds, below)
        recipe = _recipe(plan, tuned, development, final, selection)
        _log_recipe(params, recipe, tuned, settings)
        fitted_baselines = _baselines(data, parts, request.seed, notes)
        scores = fitted_baselines.scores(parts.test)
        holdout = _evaluate(development, parts, scores, request.budget)
        truth_metrics = None
        if truth_labels is not None:
            truth_metrics = truth.evaluate(
                request.histories, parts, development, fitted_baselines, truth_labels
            )
            truth.log(truth_metrics)
        importance = _log_reports(final, data, parts, holdout, scores, request.seed)
        version = _log_and_register(client, final, data, holdout.metrics, model_name, run_id)
        mlflow.log_text(
            model_card.render(
                model_name=model_name,
                version=version,
                run_id=run_id,
                data=_card_data(data),
                split=parts.describe(),
                recipe=recipe,
                calibration=final.scorer.calibrator_["method"],
                metrics=holdout.metrics,
                truth_metrics=truth_metrics,
                importance=importance,
                params=params,
                notes=notes,
            ),
            "model_card.md",
        )
        if notes:
            mlflow.set_tag("notes", " | ".join(notes))
    return TrainResult(
        run_id=run_id,
        model_name=model_name,
        version=version,
        model_uri=f"models:/{model_name}/{version}",
        metrics=holdout.metrics,
        beats_baselines=_beats(holdout.metrics),
        split=parts.describe(),
        calibration=final.scorer.calibrator_["method"],
        study_name=tuned.study_name if tuned is not None else None,
        params={k: v for k, v in params.items() if k not in fixed_params(0, 1)},
        recipe=recipe,
        truth_metrics=truth_metrics,
        notes=notes,
    )


def _log_recipe(
    params: dict[str, Any],
    recipe: dict[str, Any],
    tuned: tune.TuneResult | None,
    settings: Settings,
) -> None:
    mlflow.log_params({f"lgb.{k}": v for k, v in params.items() if k != "num_threads"})
    # Same data, seed and thread count give identical predictions; the count is part of it.
    mlflow.log_param("lgb.num_threads", settings.num_threads)
    mlflow.log_params(
        {
            "rounds": recipe["rounds"],
            "development_rounds": recipe["development_rounds"],
            "cv_method": recipe["folds"]["cv_method"],
            "cv_folds": recipe["folds"]["cv_folds"],
        }
    )
    mlflow.log_metrics(
        {"cv_pr_auc": recipe["cv_pr_auc"], "development_cv_pr_auc": recipe["development_cv_pr_auc"]}
    )
    mlflow.set_tag("tuning", recipe["tuning"])
    mlflow.set_tag("features", recipe["features"])
    mlflow.log_metrics(
        {f"selection.{k}": v for k, v in recipe["feature_selection_cv_pr_auc"].items() if k}
    )
    if tuned is not None:
        mlflow.set_tag("optuna.study_name", tuned.study_name)


def _card_data(data: TrainingData) -> dict[str, object]:
    positives = int(data.frame[LABEL].sum())
    return {
        "source": data.source,
        "digest": data.digest,
        "rows": len(data.frame),
        "positives": positives,
        "positive share": f"{positives / max(len(data.frame), 1):.1%}",
        "features": len(data.spec),
    }


def _log_and_register(
    client: MlflowClient,
    final: FittedModel,
    data: TrainingData,
    metrics: dict[str, dict[str, float]],
    model_name: str,
    run_id: str,
) -> str:
    """Log the scoring model and register it as a new ``@challenger`` version."""
    beats = str(_beats(metrics)).lower()
    method = final.scorer.calibrator_["method"]
    mlflow.set_tags({"beats_baselines": beats, "calibration.method": method})
    info = tracking.log_scoring_model(
        final.scorer, data.frame.head(5), {"calibration": method, "data_digest": data.digest}
    )
    version = registry.register(
        client,
        info.model_uri,
        model_name,
        {
            "run_id": run_id,
            "data.digest": data.digest,
            "feature_spec.hash": final.scorer.spec.hash,
            "test.pr_auc": f"{metrics['model']['pr_auc']:.6f}",
            "test.ece": f"{metrics['model']['ece']:.6f}",
            "beats_baselines": beats,
        },
    )
    return str(version.version)
