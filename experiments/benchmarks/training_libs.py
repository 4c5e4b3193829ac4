"""LightGBM, XGBoost (hist) and scikit-learn HistGradientBoosting fit at matched settings.

Helper of ``bench_training``. Every library gets the same float64 matrices (categorical
features as level codes, declared categorical to each library), the same tree shape and
regularisation, no row or column subsampling, and boosting with early stopping on validation
PR-AUC with the same patience. Fit time covers building the library's dataset (binning) and
boosting with its per-round validation metric; it excludes predicting the test set.

Where the settings cannot be matched exactly:

* XGBoost has no minimum row count per leaf (only ``min_child_weight``, a hessian sum); it
  keeps its default of 1. Its ``aucpr`` early-stopping metric interpolates the PR curve
  slightly differently from average precision.
* scikit-learn scores ``average_precision`` in Python every round, on the validation set and
  on a 10,000-row training subsample, and stops when none of the last 50 rounds beats the
  score 51 rounds back (LightGBM/XGBoost: no improvement on the best for 50 rounds). It keeps
  every tree it grew, so the test set is scored at its best validation round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from threadpoolctl import threadpool_limits

from features.spec import FeatureSpec
from training.model import EARLY_STOPPING_ROUNDS, MAX_ROUNDS, METRIC, fixed_params, lgb_dataset

LEARNING_RATE = 0.05
LEAVES = 15
MIN_ROWS_PER_LEAF = 20
L2 = 1e-3
MAX_BINS = 255


class Stopwatch:
    """Wall-clock and process CPU seconds (all threads) of a ``with`` block.

    CPU well below threads x wall means the machine was busy with other work.
    """

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


@dataclass(frozen=True)
class Matrices:
    """The same train / validation / test data for every library."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    categorical: list[int]


@dataclass(frozen=True)
class LibraryResult:
    """One library's fit: time, rounds and test ranking quality."""

    library: str
    fit_seconds: float
    fit_cpu_seconds: float
    best_round: int
    rounds_grown: int
    test_pr_auc: float
    test_roc_auc: float

    @property
    def seconds_per_round(self) -> float:
        """Fit time divided by the rounds grown."""
        return self.fit_seconds / max(self.rounds_grown, 1)


def _result(name: str, clock: Stopwatch, best: int, grown: int, y: np.ndarray, scores: np.ndarray):
    return LibraryResult(
        name,
        clock.wall,
        clock.cpu,
        best,
        grown,
        float(average_precision_score(y, scores)),
        float(roc_auc_score(y, scores)),
    )


def fit_lightgbm(m: Matrices, seed: int, threads: int, project_fixed: bool) -> LibraryResult:
    """LightGBM through the project's ``fit_booster``.

    Args:
        m: The data.
        seed: Seed.
        threads: OpenMP threads.
        project_fixed: Use the project's ``fixed_params`` (``deterministic``,
            ``force_row_wise``); False leaves LightGBM to pick row/column-wise histograms.
    """
    params: dict[str, Any] = fixed_params(seed, threads)
    if not project_fixed:
        for key in ("deterministic", "force_row_wise"):
            params.pop(key)
    params.update(
        learning_rate=LEARNING_RATE,
        num_leaves=LEAVES,
        max_depth=-1,
        min_data_in_leaf=MIN_ROWS_PER_LEAF,
        lambda_l1=0.0,
        lambda_l2=L2,
        max_bin=MAX_BINS,
        feature_fraction=1.0,
        bagging_fraction=1.0,
        bagging_freq=0,
        scale_pos_weight=1.0,
    )
    with Stopwatch() as clock:
        train = lgb.Dataset(
            m.x_train, m.y_train, categorical_feature=m.categorical or "auto", free_raw_data=False
        )
        validation = lgb.Dataset(m.x_validation, m.y_validation, reference=train)
        booster, _ = fit_booster(params, train, validation)
    # fit_booster returns the booster cut at its best round; rounds grown = best + patience
    # unless the round limit was hit first.
    best = booster.current_iteration()
    grown = min(best + EARLY_STOPPING_ROUNDS, MAX_ROUNDS)
    name = "LightGBM" if project_fixed else "LightGBM (no deterministic/force_row_wise)"
    return _result(name, clock, best, grown, m.y_test, booster.predict(m.x_test))


def fit_xgboost(m: Matrices, seed: int, threads: int) -> LibraryResult:
    """XGBoost ``tree_method="hist"``, leaf-wise growth capped at the same number of leaves."""
    import xgboost as xgb

    types = ["c" if i in m.categorical else "q" for i in range(m.x_train.shape[1])]
    params = {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "tree_method": "hist",
        "grow_policy": "lossguide",
        "max_leaves": LEAVES,
        "max_depth": 0,
        "eta": LEARNING_RATE,
        "lambda": L2,
        "alpha": 0.0,
        "max_bin": MAX_BINS,
        "subsample": 1.0,
        "colsample_bytree": 1.0,
        "nthread": threads,
        "seed": seed,
        "verbosity": 0,
    }
    with Stopwatch() as clock:
        train = xgb.QuantileDMatrix(
            m.x_train, m.y_train, feature_types=types, enable_categorical=True, max_bin=MAX_BINS
        )
        validation = xgb.QuantileDMatrix(
            m.x_validation,
            m.y_validation,
            feature_types=types,
            enable_categorical=True,
            max_bin=MAX_BINS,
            ref=train,
        )
        booster = xgb.train(
            params,
            train,
            num_boost_round=MAX_ROUNDS,
            evals=[(validation, "validation")],
            early_stopping_rounds=EARLY_STOPPING_ROUNDS,
            verbose_eval=False,
        )
    best = booster.best_iteration + 1
    test = xgb.DMatrix(m.x_test, feature_types=types, enable_categorical=True)
    scores = booster.predict(test, iteration_range=(0, best))
    return _result("XGBoost (hist)", clock, best, booster.num_boosted_rounds(), m.y_test, scores)


def fit_sklearn(m: Matrices, seed: int, threads: int) -> LibraryResult:
    """scikit-learn ``HistGradientBoostingClassifier``, test scored at its best round."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    mask = np.zeros(m.x_train.shape[1], dtype=bool)
    mask[m.categorical] = True
    model = HistGradientBoostingClassifier(
        learning_rate=LEARNING_RATE,
        max_iter=MAX_ROUNDS,
        max_leaf_nodes=LEAVES,
        max_depth=None,
        min_samples_leaf=MIN_ROWS_PER_LEAF,
        l2_regularization=L2,
        max_bins=MAX_BINS,
        categorical_features=mask,
        early_stopping=True,
        scoring="average_precision",
        n_iter_no_change=EARLY_STOPPING_ROUNDS,
        random_state=seed,
    )
    with threadpool_limits(limits=threads, user_api="openmp"):
        with Stopwatch() as clock:
            model.fit(m.x_train, m.y_train, X_val=m.x_validation, y_val=m.y_validation)
        # validation_score_[0] is before the first tree, so its argmax is the best round.
        best = int(np.argmax(model.validation_score_))
        scores = None
        for round_, proba in enumerate(model.staged_predict_proba(m.x_test), start=1):
            if round_ == max(best, 1):
                scores = proba[:, 1]
                break
    return _result("scikit-learn HGB", clock, best, model.n_iter_, m.y_test, scores)


def compare(m: Matrices, seed: int, threads: int, repeats: int) -> list[LibraryResult]:
    """Fit each library ``repeats`` times; keep the fastest fit of each (metrics are equal).

    Returns:
        Results in the order LightGBM (project settings), LightGBM (plain), XGBoost, sklearn.
    """
    fits: list[Callable[[], LibraryResult]] = [
        lambda: fit_lightgbm(m, seed, threads, project_fixed=True),
        lambda: fit_lightgbm(m, seed, threads, project_fixed=False),
        lambda: fit_xgboost(m, seed, threads),
        lambda: fit_sklearn(m, seed, threads),
    ]
    try:
        import xgboost  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            "the library comparison needs XGBoost from the bench dependency group: "
            "uv run --group bench ... (or pass --skip-libs)"
        ) from exc
    results = []
    for fit in fits:
        runs = [fit() for _ in range(max(repeats, 1))]
        results.append(min(runs, key=lambda r: r.fit_seconds))
    return results


# One train/validation fit with early stopping: how the project fit boosters before it moved
# to cross-validation (training.crossfit); the benchmark compares libraries this way.


def binned_datasets(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    params: dict[str, Any],
) -> tuple[lgb.Dataset, lgb.Dataset]:
    """Train and validation Datasets, binned once, for any number of fits.

    Binning depends only on dataset parameters (seeds, bins, categorical features), all in
    ``fixed_params``; no tuned parameter is one (``feature_pre_filter`` is off, so
    ``min_data_in_leaf`` may change between fits), and a booster trained on reused Datasets
    equals one trained on fresh ones. The raw matrices are freed after binning, so a fit
    that did change a dataset parameter fails loudly instead of silently re-binning.

    Args:
        train: Training rows.
        validation: Validation rows (binned with the training rows' bin edges).
        spec: FeatureSpec.
        levels: Category levels of the training rows.
        params: ``fixed_params`` of the fits that will use the Datasets.

    Returns:
        The constructed training and validation Datasets.
    """
    train_set = lgb_dataset(train, spec, levels, params=params, free_raw_data=True).construct()
    validation_set = lgb_dataset(validation, spec, levels, train_set, params, free_raw_data=True)
    return train_set, validation_set.construct()


def fit_booster(
    params: dict[str, Any],
    train: lgb.Dataset,
    validation: lgb.Dataset,
    callbacks: Sequence[Callable] = (),
) -> tuple[lgb.Booster, float]:
    """Boost with early stopping on validation PR-AUC.

    Args:
        params: Full LightGBM parameters (``fixed_params`` merged with tuned ones).
        train: Training Dataset.
        validation: Validation Dataset built with ``reference=train``.
        callbacks: Extra callbacks (e.g. Optuna pruning).

    Returns:
        The booster truncated to its best iteration, and its validation PR-AUC there.
    """
    booster = lgb.train(
        params,
        train,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[validation],
        valid_names=["validation"],
        callbacks=[
            lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False),
            *callbacks,
        ],
    )
    # Keep only the trees up to the best round so the saved model equals the evaluated one.
    best = booster.best_iteration or booster.current_iteration()
    value = float(booster.best_score["validation"][METRIC])
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), value
