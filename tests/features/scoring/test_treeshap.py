"""The shipped TreeSHAP equals LightGBM's ``pred_contrib``: missing values, categories, depth."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from features.scoring.encoding import encode_features
from features.scoring.treeshap import TreeShapError, shap_values, tree_paths

ROWS = 1500


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Numeric columns with NaNs and exact zeros, two categorical columns, a noisy label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 6))
    x[:, 3] = rng.integers(0, 40, ROWS)  # categorical, many levels: bitset splits
    x[:, 4] = rng.integers(0, 4, ROWS)  # categorical, few levels: one-vs-rest splits
    x[rng.random(ROWS) < 0.2, 0] = np.nan
    x[rng.random(ROWS) < 0.3, 5] = 0.0
    x[rng.random(ROWS) < 0.1, 3] = np.nan
    signal = np.nan_to_num(x[:, 0]) + x[:, 1] + np.isin(x[:, 3], [2, 5, 7, 11, 33])
    signal += (x[:, 4] == 3) + (x[:, 5] == 0) + rng.normal(scale=0.5, size=ROWS)
    return x, (signal > 1).astype(int)


def _booster(rounds: int = 40, **params) -> lgb.Booster:
    x, y = _data()
    base = {
        "objective": "binary", "verbosity": -1, "num_threads": 1, "deterministic": True,
        "seed": 1, "min_data_per_group": 5, "cat_smooth": 1, "max_cat_to_onehot": 4,
    }  # fmt: skip
    dataset = lgb.Dataset(x, y, categorical_feature=[3, 4])
    return lgb.train({**base, **params}, dataset, num_boost_round=rounds)


def _probe_rows() -> np.ndarray:
    """Held-out rows plus the edge cases of LightGBM's split rules."""
    x, _ = _data(seed=5)
    x = x[:300].copy()
    x[:10, 3] = -2.0  # negative category: always right
    x[10:20, 3] = 1000.0  # category past every bitset
    x[20:30, 3] = 2.7  # truncated to category 2
    x[30:40, 4] = np.nan  # missing category
    x[40:50, 0] = 1e-40  # "zero" under the Zero missing type
    x[50:60, 1] = np.nan  # NaN in a column that had none in training
    x[60:70, :] = np.nan  # nothing known at all
    return x


@pytest.mark.parametrize(
    "params",
    [
        {"num_leaves": 31},
        {"num_leaves": 31, "zero_as_missing": True},
        {"num_leaves": 15, "use_missing": False},
        {"num_leaves": 63, "min_data_in_leaf": 5},  # deep paths, features split repeatedly
        {"num_leaves": 6, "max_depth": 3},
    ],
    ids=["nan-missing", "zero-missing", "no-missing", "deep", "shallow"],
)
@pytest.mark.parametrize("tables", [10, 2, 0], ids=["tables", "some-tables", "closed-form"])
def test_equals_pred_contrib_with_missing_values_and_categorical_splits(params, tables):
    booster = _booster(**params)
    model = booster.dump_model()
    decisions = {
        n.get("decision_type")
        for tree in model["tree_info"]
        for n in _nodes(tree["tree_structure"])
    }
    assert "==" in decisions, "the model has no categorical split to test"
    rows = _probe_rows()
    paths = tree_paths(booster, table_max_features=tables)
    if tables == 0:
        assert not (paths.table_start >= 0).any()
    if tables == 2:
        assert 0 < (paths.table_start >= 0).mean() < 1, "want leaves both ways"
    ours = shap_values(paths, rows)
    assert ours.shape == (len(rows), rows.shape[1] + 1)
    np.testing.assert_allclose(ours, booster.predict(rows, pred_contrib=True), rtol=0, atol=1e-6)
    # Additive: the row sums are the raw margin.
    np.testing.assert_allclose(
        ours.sum(axis=1), booster.predict(rows, raw_score=True), rtol=0, atol=1e-6
    )


def _nodes(node: dict):
    """Every split node of a dumped tree."""
    if "split_index" in node:
        yield node
        yield from _nodes(node["left_child"])
        yield from _nodes(node["right_child"])


def test_a_small_table_budget_falls_back_to_the_closed_form_for_the_rest():
    booster = _booster(num_leaves=31)
    rows = _probe_rows()
    full = tree_paths(booster)
    tight = tree_paths(booster, table_budget=full.table.size // 3)
    assert tight.table.size <= full.table.size // 3
    assert 0 < (tight.table_start >= 0).mean() < 1
    np.testing.assert_allclose(shap_values(tight, rows), shap_values(full, rows), atol=1e-12)


def test_constant_trees_only_move_the_base_value():
    # min_data_in_leaf above the row count: every tree is a single leaf.
    booster = _booster(rounds=3, min_data_in_leaf=ROWS + 1)
    rows = _probe_rows()
    ours = shap_values(tree_paths(booster), rows)
    assert not ours[:, :-1].any()
    np.testing.assert_allclose(ours, booster.predict(rows, pred_contrib=True), atol=1e-12)


def test_the_scorer_ships_it_equal_to_pred_contrib_with_unseen_levels(tiny_scorer):
    scorer, frame = tiny_scorer
    rows = frame.head(60).copy()
    rows.loc[rows.index[::3], "x"] = np.nan
    rows.loc[rows.index[1::4], "kind"] = None
    rows.loc[rows.index[2::5], "kind"] = "never-seen"
    matrix = encode_features(rows, scorer.spec, scorer.levels_)
    np.testing.assert_allclose(
        scorer.explain(matrix).contributions,
        scorer.booster_.predict(matrix, pred_contrib=True),
        rtol=0,
        atol=1e-6,
    )


def test_unsupported_models_and_wrong_shapes_are_refused():
    x, _ = _data()
    multiclass = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1},
        lgb.Dataset(x, np.arange(ROWS) % 3),
        num_boost_round=2,
    )
    with pytest.raises(TreeShapError, match="single-output"):
        tree_paths(multiclass)
    paths = tree_paths(_booster(rounds=2))
    with pytest.raises(TreeShapError, match=r"shape \(3, 5\), the booster expects 6 columns"):
        shap_values(paths, np.zeros((3, 5)))
