"""Optuna tuning of the LightGBM booster on the validation period.

The study is persistent (SQLite by default, any RDB URL so several workers can share it) and
named from the experiment and the data digest, so re-running on the same data resumes it.
TPE proposes parameters; a median pruner stops trials whose validation PR-AUC lags during
boosting. Every trial is logged as a nested MLflow run under the training run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from features.spec import FeatureSpec
from training.dataset import LABEL, Split
from training.model import METRIC, default_params, fit_booster, fixed_params, lgb_dataset

REPORT_EVERY_ROUNDS = 10


@dataclass(frozen=True)
class TuneConfig:
    """How to run the study.

    Attributes:
        seed: Seed of the TPE sampler and of LightGBM.
        trials: Trials to run in this session (0 = use the study's best or the defaults).
        timeout: Stop starting trials after this many seconds (None = no limit).
        storage: Optuna RDB URL (``sqlite:///optuna.db``, ``postgresql://...``).
        study_name: Name of the (possibly existing) study to resume.
        num_threads: LightGBM threads per trial.
        n_jobs: Parallel trials in this process.
    """

    seed: int
    trials: int
    timeout: float | None
    storage: str
    study_name: str
    num_threads: int = 1
    n_jobs: int = 1


@dataclass(frozen=True)
class TuneResult:
    """Outcome of tuning: the parameters to train the final model with."""

    params: dict[str, Any]
    best_value: float | None
    trials_run: int
    trials_complete_total: int
    study_name: str
    seed: int


def study_name(experiment: str, data_digest: str) -> str:
    """Study name from the experiment and the data, so the same data resumes one study."""
    return f"{experiment}-{data_digest[:16]}"


def search_space(trial: optuna.Trial, negatives_per_positive: float) -> dict[str, Any]:
    """LightGBM parameters proposed for one trial."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 100, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-4, 10.0, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-4, 10.0, log=True),
        # Random split thresholds: a strong regulariser when labels number in the hundreds.
        "extra_trees": trial.suggest_categorical("extra_trees", [False, True]),
        # Up-weighting positives up to the class ratio; calibration undoes the distortion.
        "scale_pos_weight": trial.suggest_float(
            "scale_pos_weight", 1.0, max(2.0, negatives_per_positive), log=True
        ),
    }


def pruning_callback(trial: optuna.Trial) -> Callable[[lgb.callback.CallbackEnv], None]:
    """LightGBM callback reporting validation PR-AUC every few rounds and pruning bad trials."""

    def callback(env: lgb.callback.CallbackEnv) -> None:
        # Every report is a storage write (an fsync on SQLite); every round would dominate.
        if env.iteration % REPORT_EVERY_ROUNDS:
            return
        for data_name, metric, value, _ in env.evaluation_result_list:
            if data_name == "validation" and metric == METRIC:
                trial.report(value, step=env.iteration)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at round {env.iteration}: {value:.4f}")

    callback.order = 20  # before early stopping (order 30) sees the round
    return callback


class _TrialLogger:
    """Logs each trial as a nested MLflow run (client API, so parallel trials are safe)."""

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str) -> None:
        self.client, self.experiment_id, self.parent = client, experiment_id, parent_run_id

    def log(self, trial: optuna.Trial, params: dict, state: str, value: float | None) -> None:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial.number}",
            tags={"mlflow.parentRunId": self.parent, "optuna.state": state},
        )
        now = int(time.time() * 1000)
        metrics = [Metric("validation_pr_auc", value, now, 0)] if value is not None else []
        self.client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in sorted(params.items())],
            tags=[RunTag("optuna.trial_number", str(trial.number))],
        )
        status = "FAILED" if state == "FAIL" else "FINISHED"
        self.client.set_terminated(run.info.run_id, status=status)


def _objective(
    split: Split,
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    config: TuneConfig,
    logger: _TrialLogger,
) -> Callable[[optuna.Trial], float]:
    positives = int(split.train[LABEL].sum())
    ratio = (len(split.train) - positives) / max(positives, 1)

    def objective(trial: optuna.Trial) -> float:
        params = search_space(trial, ratio)
        full = {**fixed_params(config.seed, config.num_threads), **params}
        train = lgb_dataset(split.train, spec, levels)
        validation = lgb_dataset(split.validation, spec, levels, reference=train)
        try:
            booster, value = fit_booster(full, train, validation, [pruning_callback(trial)])
        except optuna.TrialPruned:
            logger.log(trial, params, "PRUNED", None)
            raise
        except Exception:
            logger.log(trial, params, "FAIL", None)
            raise
        trial.set_user_attr("best_iteration", booster.current_iteration())
        logger.log(trial, params, "COMPLETE", value)
        return value

    return objective


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]tuning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials · best PR-AUC {task.fields[best]} · {task.fields[left]} left"),
        console=Console(stderr=True),
        transient=False,
    )


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value) if complete else None


def tune(
    split: Split,
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    config: TuneConfig,
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
) -> TuneResult:
    """Run (or resume) the study and return the best parameters found so far.

    Args:
        split: Train and validation rows (the test set is never touched here).
        spec: FeatureSpec.
        levels: Category levels.
        config: Study settings.
        client: MLflow client for nested trial runs.
        experiment_id: MLflow experiment of the parent run.
        parent_run_id: Training run the trials nest under.

    Returns:
        Best parameters (the untuned defaults if no trial completed).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=config.study_name,
        storage=config.storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=30),
        load_if_exists=True,
    )
    if not study.trials:
        # Start from a sensible point so even a tiny budget has a good candidate.
        defaults = {k: v for k, v in default_params().items() if k != "bagging_freq"}
        study.enqueue_trial(defaults)
    logger = _TrialLogger(client, experiment_id, parent_run_id)
    before = len(study.trials)
    if config.trials > 0:
        _optimize(study, _objective(split, spec, levels, config, logger), config)
    best = _best(study)
    params = {**default_params(), **(best.params if best else {})}
    return TuneResult(
        params=params,
        best_value=best.value if best else None,
        trials_run=len(study.trials) - before,
        trials_complete_total=len(
            study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        ),
        study_name=config.study_name,
        seed=config.seed,
    )


def _optimize(study: optuna.Study, objective: Callable, config: TuneConfig) -> None:
    started = time.monotonic()
    with _progress() as progress:
        task = progress.add_task("tuning", total=config.trials, best="-", left="?")

        def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            done = progress.tasks[task].completed + 1
            elapsed = time.monotonic() - started
            left = elapsed / done * (config.trials - done)
            if config.timeout:
                left = min(left, config.timeout - elapsed)
            best = _best(study)
            progress.update(
                task,
                completed=done,
                best=f"{best.value:.4f}" if best else "-",
                left=_format_seconds(left if math.isfinite(left) else 0),
            )

        study.optimize(
            objective,
            n_trials=config.trials,
            timeout=config.timeout,
            n_jobs=config.n_jobs,
            callbacks=[on_trial],
        )
