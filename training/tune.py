"""Optuna tuning of the LightGBM booster by cross-validation over the development labels.

Each trial is scored by the mean validation PR-AUC of its folds (``training.crossfit``:
expanding windows in time, or stratified), so every development label counts, not one small
validation slice. The study is persistent (SQLite by default, any RDB URL so several
workers can share it); a run starts its own study unless it is asked to resume one. TPE
proposes parameters; a percentile pruner (``ProgressPruner``) stops trials whose mean
validation PR-AUC lags the other trials' during boosting. Every trial is logged as a nested
MLflow run under the training run.

Several workers may share one study: ``spotcheck train --storage postgresql://...
--study-name NAME --trials N`` on as many machines as wanted, with the same data and seed (the
folds, hence the objective, depend on both). ``open_study`` makes that safe: the first
worker's ``create_study`` wins (creation is one atomic insert in the database) and the others
load the study on the duplicate error, and workers creating the storage's tables in a fresh
database at once retry instead of failing. Only the worker that created the study enqueues
the default parameters, so they are tried exactly once, and records its training run as the
study's user attribute ``mlflow_parent_run_id``: every trial of the study, whichever worker
ran it, is logged as a child of that run (tag ``mlflow.parentRunId``; a later ``--resume``
run's trials too) and names the training run that ran it in ``spotcheck.training_run_id``. A
worker that joins an existing study seeds its sampler from the seed and its own run, so
workers do not propose the same parameters. Plain ``postgresql://`` URLs are read as
``postgresql+psycopg2://``: the ``postgres`` extra installs psycopg2, while SQLAlchemy 2.1
reads the plain scheme as psycopg 3.

Pruning compares trials at equal boosting *progress* (rounds x learning rate), not at equal
rounds: a trial with half the learning rate needs twice the rounds to get as far, and
comparing rounds would prune the slow learners that often end best. The search space and
pruner settings were chosen from measured learning curves on 200,000 labelled stores
(``experiments/RESULTS.md``, Training).
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.study import StudyDirection
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

from features.byo import LABEL
from features.spec import FeatureSpec
from training import TrainingError
from training.crossfit import Folds, cross_validate, cv_dataset
from training.model import DEFAULT_MAX_DEPTH, METRIC, default_params, fixed_params

# One pruning step = this much boosting progress (rounds x learning rate): a report every 10
# rounds at the default learning rate 0.05, every 17 at 0.03, every 3 at 0.2.
PROGRESS_PER_STEP = 0.5
# Prune a trial whose best PR-AUC so far falls in the bottom quarter of the trials at the same
# step; never before 3 trials completed nor before step 10 (progress 5, i.e. 100 rounds at
# learning rate 0.05), and only against at least 3 trials that reached the step.
PRUNE_KEEP_PERCENTILE = 75.0
PRUNE_STARTUP_TRIALS = 3
PRUNE_WARMUP_STEPS = 10
PRUNE_MIN_TRIALS = 3
# The study's user attribute naming the training run its trials nest under (its creator's).
PARENT_RUN_ATTR = "mlflow_parent_run_id"
# Tag of a trial run naming the training run (worker) that ran it.
WORKER_RUN_TAG = "spotcheck.training_run_id"
# Attempts at opening a storage whose tables another worker is creating at the same moment.
STORAGE_ATTEMPTS = 5


class StudyStorageError(TrainingError):
    """The Optuna storage cannot be opened (the message names it, password hidden)."""


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
        max_depth: Depth cap of every tree (-1: none).
        n_jobs: Parallel trials in this process.
        pruning: Prune lagging trials (False still reports their learning curves).
    """

    seed: int
    trials: int
    timeout: float | None
    storage: str
    study_name: str
    num_threads: int = 1
    max_depth: int = DEFAULT_MAX_DEPTH
    n_jobs: int = 1
    pruning: bool = True


@dataclass(frozen=True)
class TuneResult:
    """Outcome of tuning: the parameters to train the final model with."""

    params: dict[str, Any]
    best_value: float | None
    trials_run: int
    trials_complete_total: int
    study_name: str
    seed: int


def study_name(experiment: str, data_digest: str, run_id: str | None = None) -> str:
    """Study name from the experiment and the data, and the run unless resuming.

    Args:
        experiment: MLflow experiment.
        data_digest: The training data's digest.
        run_id: The training run: each run gets a study of its own, so the same command
            gives the same model; None gives the data's shared study (``--resume``).
    """
    name = f"{experiment}-{data_digest[:16]}"
    return f"{name}-{run_id[:12]}" if run_id else name


def search_space(trial: optuna.Trial, negatives_per_positive: float) -> dict[str, Any]:
    """LightGBM parameters proposed for one trial.

    Learning rates start at 0.03: on 200,000 labelled stores, rates of 0.01-0.03 needed
    600-2,000 rounds (20-60 s a trial) and found nothing better than 0.03-0.05 did.
    """
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.2, log=True),
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


class ProgressPruner(optuna.pruners.BasePruner):
    """Percentile pruning against every trial that reached the same step, pruned ones included.

    Optuna's ``PercentilePruner`` compares a trial with completed trials only, so every prune
    drops a low curve from the reference and raises the bar for the next trial: on 200,000
    labelled stores it went on to prune a slow-starting configuration that ends among the
    best. Counting pruned trials' values up to where they stopped keeps the reference equal
    to what the study has seen.

    Args:
        keep_percentile: Share of trials (0-100) a trial must beat the rest of to go on: it
            is pruned when its best value so far is below the ``100 - keep_percentile``th
            percentile of the others' values at its step.
        n_startup_trials: Completed trials before any pruning.
        n_warmup_steps: Steps a trial runs before it can be pruned.
        n_min_trials: Other trials that must have reached the step.
    """

    def __init__(
        self,
        keep_percentile: float,
        n_startup_trials: int,
        n_warmup_steps: int,
        n_min_trials: int,
    ) -> None:
        self.keep_percentile = keep_percentile
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.n_min_trials = n_min_trials

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """True when the trial lags the others at its latest step (see the class docstring)."""
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if sum(t.state == TrialState.COMPLETE for t in finished) < self.n_startup_trials:
            return False
        others = [t.intermediate_values[step] for t in finished if step in t.intermediate_values]
        if len(others) < self.n_min_trials:
            return False
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        best = np.nanmax([sign * v for v in trial.intermediate_values.values()])
        threshold = np.nanpercentile([sign * v for v in others], 100.0 - self.keep_percentile)
        return bool(best < threshold)


def make_pruner(pruning: bool) -> optuna.pruners.BasePruner:
    """The study's pruner (see the module constants), or one that never prunes."""
    if not pruning:
        return optuna.pruners.NopPruner()
    return ProgressPruner(
        PRUNE_KEEP_PERCENTILE, PRUNE_STARTUP_TRIALS, PRUNE_WARMUP_STEPS, PRUNE_MIN_TRIALS
    )


def progress_step(rounds: int, learning_rate: float) -> int:
    """Pruning step after ``rounds`` boosting rounds: progress (rounds x rate) in steps."""
    return int(rounds * learning_rate / PROGRESS_PER_STEP)


class PruningReporter:
    """LightGBM callback: reports validation PR-AUC at each new step and prunes lagging trials.

    Attributes:
        rounds: Boosting rounds run so far (also for a pruned trial).
    """

    def __init__(self, trial: optuna.Trial, learning_rate: float) -> None:
        self.trial, self.learning_rate = trial, learning_rate
        self.rounds, self._step = 0, -1
        # Run before early stopping (order 30) sees the round; an instance attribute, as
        # LightGBM overwrites callbacks' missing instance ``order`` with its own default.
        self.order = 20

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        """Called by LightGBM after each round; raises ``optuna.TrialPruned`` to stop."""
        self.rounds = env.iteration + 1
        step = progress_step(self.rounds, self.learning_rate)
        # Every report is a storage write (an fsync on SQLite): one per step, not per round.
        if step == self._step:
            return
        self._step = step
        for data_name, metric, value, *_ in env.evaluation_result_list:
            # lgb.cv reports the folds' mean validation value under the name "valid".
            if data_name == "valid" and metric == METRIC:
                self.trial.report(value, step=step)
                if self.trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at round {self.rounds}: {value:.4f}")


class _TrialLogger:
    """Logs each trial as a nested MLflow run (client API, so parallel trials are safe).

    The parent is the run that created the study (``PARENT_RUN_ATTR``), looked up when the
    first trial ends: a worker that joined the study at the same moment as its creator may
    load it before the creator has recorded its run. Until the attribute is there, or when
    the tracking store does not know that run, the worker's own training run is the parent.
    """

    def __init__(
        self, client: MlflowClient, experiment_id: str, run_id: str, study: optuna.Study
    ) -> None:
        self.client, self.experiment_id, self.study = client, experiment_id, study
        self.run_id = run_id
        self._parent: tuple[str, str] | None = None

    def parent(self) -> tuple[str, str]:
        """``(parent run id, its experiment id)`` the trial runs are logged under."""
        if self._parent is not None:
            return self._parent
        parent_id = self.study.user_attrs.get(PARENT_RUN_ATTR)
        if parent_id is None:
            return self.run_id, self.experiment_id
        if parent_id == self.run_id:
            self._parent = (self.run_id, self.experiment_id)
            return self._parent
        try:
            experiment_id = self.client.get_run(parent_id).info.experiment_id
        except MlflowException:
            # A study shared across tracking stores: its creator's run is not in this one.
            self._parent = (self.run_id, self.experiment_id)
        else:
            self._parent = (parent_id, experiment_id)
        return self._parent

    def log(self, trial: optuna.Trial, params: dict, state: str, value: float | None) -> None:
        """Log one finished trial as a child run of ``parent()``."""
        parent_id, experiment_id = self.parent()
        run = self.client.create_run(
            experiment_id,
            run_name=f"trial-{trial.number}",
            tags={
                "mlflow.parentRunId": parent_id,
                "optuna.state": state,
                WORKER_RUN_TAG: self.run_id,
            },
        )
        now = int(time.time() * 1000)
        metrics = [Metric("cv_pr_auc", value, now, 0)] if value is not None else []
        self.client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in sorted(params.items())],
            tags=[RunTag("optuna.trial_number", str(trial.number))],
        )
        status = "FAILED" if state == "FAIL" else "FINISHED"
        self.client.set_terminated(run.info.run_id, status=status)


class _Datasets:
    """The tuning Dataset, binned on first use and reused by every later trial.

    Binning costs seconds a trial at 100k+ rows and never changes between trials (only
    ``fixed_params`` are dataset parameters); ``lgb.cv`` subsets it per fold. Each thread gets
    its own: LightGBM updates a Dataset's parameters while training on it, so parallel
    trials must not share one.
    """

    def __init__(
        self, frame: pd.DataFrame, spec: FeatureSpec, levels: dict[str, list[str]], params: dict
    ) -> None:
        self._args = (frame, spec, levels, params)
        self._local = threading.local()

    def get(self) -> lgb.Dataset:
        """This thread's Dataset."""
        if not hasattr(self._local, "dataset"):
            self._local.dataset = cv_dataset(*self._args)
        return self._local.dataset


def _objective(
    frame: pd.DataFrame,
    folds: Folds,
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    config: TuneConfig,
    logger: _TrialLogger,
) -> Callable[[optuna.Trial], float]:
    positives = int(frame[LABEL].sum())
    ratio = (len(frame) - positives) / max(positives, 1)
    fixed = fixed_params(config.seed, config.num_threads, config.max_depth)
    datasets = _Datasets(frame, spec, levels, fixed)

    def objective(trial: optuna.Trial) -> float:
        params = search_space(trial, ratio)
        reporter = PruningReporter(trial, params["learning_rate"])
        try:
            rounds, value, *_ = cross_validate(
                {**fixed, **params}, datasets.get(), folds, [reporter]
            )
        except optuna.TrialPruned:
            trial.set_user_attr("rounds", reporter.rounds)
            logger.log(trial, params, "PRUNED", None)
            raise
        except Exception:
            logger.log(trial, params, "FAIL", None)
            raise
        trial.set_user_attr("rounds", reporter.rounds)
        trial.set_user_attr("best_iteration", rounds)
        logger.log(trial, params, "COMPLETE", value)
        return value

    return objective


def _progress(threads: int) -> Progress:
    return Progress(
        TextColumn(f"[bold]tuning[/bold] ({threads} thread{'s' if threads > 1 else ''})"),
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


def storage_url(url: str) -> str:
    """The SQLAlchemy URL Optuna opens: plain ``postgresql://`` means psycopg2.

    SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3, which is not installed; the
    ``postgres`` extra installs psycopg2. Any other URL is returned as it is.
    """
    scheme = "postgresql://"
    return "postgresql+psycopg2://" + url[len(scheme) :] if url.startswith(scheme) else url


def _shown(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable storage URL>"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open an Optuna RDB storage, creating its tables on first use.

    Workers started together on a fresh database all create the tables at once; the losers
    see a duplicate type or table (PostgreSQL) and retry, finding the tables made.

    Raises:
        StudyStorageError: The storage cannot be opened (the message names it and the cause).
    """
    url = storage_url(url)
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(url)
        except (IntegrityError, ProgrammingError) as exc:
            if attempt == STORAGE_ATTEMPTS:
                raise _storage_error(url, exc) from exc
            time.sleep(0.2 * attempt)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise _storage_error(url, exc) from exc
    raise AssertionError("unreachable")


def _storage_error(url: str, exc: BaseException) -> StudyStorageError:
    cause = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return StudyStorageError(f"Optuna storage {_shown(url)} cannot be opened: {cause}")


def open_study(config: TuneConfig, run_id: str) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when another worker or an earlier run created it.

    Creation is one insert in the database, so exactly one of several workers starting at
    once creates the study; it records ``run_id`` as the trials' parent run and enqueues the
    default parameters (exactly once across workers). A worker that joins an existing study
    seeds its sampler from ``config.seed`` and ``run_id``: with the same seed, TPE's random
    start-up trials would repeat the other workers' parameters.

    Args:
        config: Study settings (storage URL, name, seed, pruning).
        run_id: This worker's training run.

    Returns:
        The study and whether this call created it.
    """
    storage = open_storage(config.storage)
    try:
        optuna.create_study(study_name=config.study_name, storage=storage, direction="maximize")
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        created = False
    seed = config.seed if created else zlib.crc32(f"{config.seed}:{run_id}".encode())
    study = optuna.load_study(
        study_name=config.study_name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=make_pruner(config.pruning),
    )
    if created:
        study.set_user_attr(PARENT_RUN_ATTR, run_id)
        # Start from a sensible point so even a tiny budget has a good candidate.
        defaults = {k: v for k, v in default_params().items() if k != "bagging_freq"}
        study.enqueue_trial(defaults)
    return study, created


def tune(
    frame: pd.DataFrame,
    folds: Folds,
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    config: TuneConfig,
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
) -> TuneResult:
    """Run (or resume) the study and return the best parameters found so far.

    Args:
        frame: The development rows (the holdout is never touched here).
        folds: Cross-validation folds over ``frame``.
        spec: FeatureSpec.
        levels: Category levels.
        config: Study settings.
        client: MLflow client for nested trial runs.
        experiment_id: MLflow experiment of the parent run.
        parent_run_id: This training run: the trials nest under it when it creates the
            study, else under the run that did (see the module docstring).

    Returns:
        Best parameters (the untuned defaults if no trial completed).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, _ = open_study(config, parent_run_id)
    logger = _TrialLogger(client, experiment_id, parent_run_id, study)
    trials_run = 0
    if config.trials > 0:
        objective = _objective(frame, folds, spec, levels, config, logger)
        trials_run = _optimize(study, objective, config)
    best = _best(study)
    params = {**default_params(), **(best.params if best else {})}
    return TuneResult(
        params=params,
        best_value=best.value if best else None,
        trials_run=trials_run,
        trials_complete_total=len(
            study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        ),
        study_name=config.study_name,
        seed=config.seed,
    )


def _optimize(study: optuna.Study, objective: Callable, config: TuneConfig) -> int:
    """Run ``config.trials`` trials (fewer at the timeout); returns how many this worker ran.

    Counted here, not from the study's size: other workers may add trials meanwhile.
    """
    started = time.monotonic()
    with _progress(config.num_threads) as progress:
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
        return int(progress.tasks[task].completed)
