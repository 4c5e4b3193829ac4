"""Tuning machinery: a CV Dataset binned once and reused, progress-based pruning, threads."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import optuna
import pytest

from features.byo import LABEL
from features.scoring.encoding import category_levels
from training import tune
from training.crossfit import cross_validate, cv_dataset, label_times, make_folds
from training.dataset import load_own_data, split
from training.model import default_params, fixed_params
from training.settings import load_settings


@pytest.fixture(scope="module")
def parts(own_data):
    """Development rows, their folds, spec and levels of the 3,000-store team data."""
    data = load_own_data(own_data.features, own_data.labels)
    development = split(data, 0, load_settings()).development
    folds = make_folds(development[LABEL].to_numpy(), label_times(development), seed=0)
    return development, folds, data.spec, category_levels(development, data.spec)


def _trees(booster: lgb.Booster) -> str:
    # The model text's parameter section names the thread count; the trees must match.
    return booster.model_to_string().split("end of trees")[0]


def test_a_reused_cv_dataset_gives_the_same_folds_as_a_fresh_one(parts):
    development, folds, spec, levels = parts
    fixed = fixed_params(seed=3, num_threads=2)
    first = {**default_params(), "learning_rate": 0.1}
    # Changes every kind of tuned parameter, min_data_in_leaf included.
    second = {
        **first,
        "num_leaves": 40,
        "min_data_in_leaf": 60,
        "extra_trees": True,
        "feature_fraction": 0.5,
        "scale_pos_weight": 4.0,
    }
    shared = cv_dataset(development, spec, levels, fixed)
    reused = [cross_validate({**fixed, **p}, shared, folds) for p in (first, second, first)]
    for params, (rounds, value, boosters, _) in zip((first, second, first), reused, strict=True):
        fresh = cross_validate(
            {**fixed, **params}, cv_dataset(development, spec, levels, fixed), folds
        )
        assert (rounds, value) == fresh[:2]
        assert [_trees(b) for b in boosters.boosters] == [_trees(b) for b in fresh[2].boosters]
    assert reused[0][:2] != reused[1][:2]


def test_a_dataset_parameter_change_fails_instead_of_silently_rebinning(parts):
    development, folds, spec, levels = parts
    fixed = fixed_params(seed=3, num_threads=1)
    shared = cv_dataset(development, spec, levels, fixed)
    with pytest.raises(lgb.basic.LightGBMError, match="max_bin"):
        cross_validate({**fixed, **default_params(), "max_bin": 15}, shared, folds)


def test_progress_steps_line_up_learning_rates():
    # Twice the learning rate reaches the same step in half the rounds.
    assert tune.progress_step(100, 0.05) == tune.progress_step(50, 0.1) == 10
    assert tune.progress_step(1, 0.03) == 0


def _lagging_study(pruning: bool) -> optuna.Study:
    """A study whose completed trials scored a perfect 1.0 at every step."""
    study = optuna.create_study(direction="maximize", pruner=tune.make_pruner(pruning))
    for _ in range(tune.PRUNE_STARTUP_TRIALS):
        study.add_trial(
            optuna.trial.create_trial(
                value=1.0,
                params={},
                distributions={},
                intermediate_values={step: 1.0 for step in range(200)},
            )
        )
    return study


def _study_with(pruner: optuna.pruners.BasePruner, pruned_values: list[float]) -> optuna.Study:
    """Three completed trials at 0.95-0.97 and pruned ones at ``pruned_values`` (step 10)."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for value in (0.95, 0.96, 0.97):
        study.add_trial(
            optuna.trial.create_trial(
                value=value, params={}, distributions={}, intermediate_values={10: value}
            )
        )
    for value in pruned_values:
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED,
                params={},
                distributions={},
                intermediate_values={10: value},
            )
        )
    return study


def _prunes(study: optuna.Study, value: float) -> bool:
    trial = study.ask()
    trial.report(value, tune.PRUNE_WARMUP_STEPS)
    return trial.should_prune()


def test_pruned_trials_stay_in_the_reference_so_each_prune_does_not_raise_the_bar():
    keep = tune.PRUNE_KEEP_PERCENTILE
    pruned = [0.80, 0.82, 0.84, 0.86, 0.88]
    # Optuna's percentile pruner only sees the three good completed trials...
    optuna_pruner = optuna.pruners.PercentilePruner(keep, n_startup_trials=3, n_min_trials=3)
    assert _prunes(_study_with(optuna_pruner, pruned), 0.952)
    # ...the project's also counts the trials it pruned, where a 0.952 is far from lagging.
    assert not _prunes(_study_with(tune.make_pruner(True), pruned), 0.952)
    assert _prunes(_study_with(tune.make_pruner(True), pruned), 0.81)
    assert not _prunes(_study_with(tune.make_pruner(False), pruned), 0.5)


@pytest.mark.parametrize("rate", [0.1, 0.25])
def test_a_lagging_trial_is_pruned_at_the_first_step_after_warmup(parts, rate):
    development, folds, spec, levels = parts
    fixed = fixed_params(seed=0, num_threads=1)
    shared = cv_dataset(development, spec, levels, fixed)
    params = {**fixed, **default_params(), "learning_rate": rate}
    study = _lagging_study(pruning=True)
    trial = study.ask()
    reporter = tune.PruningReporter(trial, rate)
    with pytest.raises(optuna.TrialPruned):
        cross_validate(params, shared, folds, [reporter])
    # The first round whose progress (rounds x rate) reaches the warmup, whatever the rate.
    warmup_rounds = math.ceil(tune.PRUNE_WARMUP_STEPS * tune.PROGRESS_PER_STEP / rate - 1e-9)
    assert reporter.rounds == warmup_rounds
    assert max(trial.storage.get_trial(trial._trial_id).intermediate_values) == (
        tune.PRUNE_WARMUP_STEPS
    )
    # Without pruning, the same trial runs to early stopping and still reports its curve.
    study = _lagging_study(pruning=False)
    trial = study.ask()
    reporter = tune.PruningReporter(trial, rate)
    rounds, *_ = cross_validate(params, shared, folds, [reporter])
    assert reporter.rounds > warmup_rounds
    assert reporter.rounds >= rounds
    steps = trial.storage.get_trial(trial._trial_id).intermediate_values
    assert max(steps) == tune.progress_step(reporter.rounds, rate)


def test_threads_default_to_one_and_bad_values_are_named(monkeypatch):
    from features.settings import SettingsError

    monkeypatch.delenv("SPOTCHECK_NUM_THREADS", raising=False)
    assert load_settings().num_threads == 1
    monkeypatch.setenv("SPOTCHECK_NUM_THREADS", "2")
    assert load_settings().num_threads == 2
    for bad in ("two", "0"):
        monkeypatch.setenv("SPOTCHECK_NUM_THREADS", bad)
        with pytest.raises(SettingsError, match=f"SPOTCHECK_NUM_THREADS='{bad}'"):
            load_settings()


def test_the_depth_cap_is_off_by_default_can_be_set_and_bad_values_are_named(monkeypatch):
    from features.settings import SettingsError

    monkeypatch.delenv("SPOTCHECK_MAX_DEPTH", raising=False)
    assert load_settings().max_depth == -1
    assert fixed_params(seed=0, num_threads=1)["max_depth"] == -1
    monkeypatch.setenv("SPOTCHECK_MAX_DEPTH", "8")
    assert load_settings().max_depth == 8
    for bad in ("deep", "0", "-2"):
        monkeypatch.setenv("SPOTCHECK_MAX_DEPTH", bad)
        with pytest.raises(SettingsError, match=f"SPOTCHECK_MAX_DEPTH='{bad}'"):
            load_settings()


def test_trees_respect_the_depth_cap():
    x = np.random.default_rng(0).normal(size=(2000, 8))
    y = (x[:, 0] * x[:, 1] + x[:, 2] > 0).astype(int)
    for cap, deepest in ((3, 3), (-1, None)):
        params = {**fixed_params(seed=0, num_threads=1, max_depth=cap), **default_params()}
        params.update(num_leaves=31, min_data_in_leaf=5)
        booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=20)
        depths = [_depth(t["tree_structure"]) for t in booster.dump_model()["tree_info"]]
        if deepest is None:
            assert max(depths) > 3  # uncapped, 31 leaves go deeper
        else:
            assert max(depths) <= deepest


def _depth(node: dict) -> int:
    if "split_index" not in node:
        return 0
    return 1 + max(_depth(node["left_child"]), _depth(node["right_child"]))
