"""Benchmark exact TreeSHAP methods side by side: stores explained per second and per store.

For each model (the registered champion loaded through MLflow, and optionally ``--shapes``
LightGBM models, e.g. 300 trees of 31 leaves, trained here on the table with the truth),
one run measures on one thread:

* ``predict``: LightGBM's bare raw prediction (the floor every explanation is compared to);
* ``pred_contrib``: LightGBM's native TreeSHAP (recursive extend/unwind per row and tree);
* ``spotcheck tables d<=D``: ``features.scoring.treeshap``: per-leaf tables of all ``2^d``
  followed-feature patterns built at load (FastTreeSHAP v2) for leaves with ``d <= D``
  distinct path features, the closed form per row for deeper ones; numba row loop. The
  shipped ``D`` is marked; ``--table-caps`` adds others;
* ``spotcheck closed form``: the same code with no tables (every leaf's closed form per row,
  ``O(d^2)``);
* ``shap.TreeExplainer``: shap's explainer on the booster (for LightGBM it calls
  ``pred_contrib``; measured for its overhead);
* ``shap internal C++``: shap's own TreeSHAP on its parsed copy of the trees (refused when the
  parser cannot read the model, e.g. categorical splits: recorded, not hidden);
* ``scorer.explain``: the whole shipped path (contributions, calibration, reasons both ways).

The layout each ``spotcheck`` method builds once per model (seconds, table size, the deepest
path) is recorded with it.

Batch throughput is stores per second on ``--batch`` rows (best of ``--repeat``); single-store
latency is the median over ``--calls`` one-row calls. Every method's contributions are checked
against ``pred_contrib`` (max absolute difference) on the same rows, missing values included.

Usage (after ``make demo``)::

    MLFLOW_TRACKING_URI=sqlite:///demo/mlflow.db uv run python -m \\
        experiments.benchmarks.bench_explain --features demo/features.parquet \\
        --truth demo/histories/truth.parquet --shapes 300x31
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd


def _best_seconds(call: Callable[[], object], repeat: int) -> float:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return min(seconds)


def _median_ms(call: Callable[[np.ndarray], object], matrix: np.ndarray, calls: int) -> float:
    for i in range(min(20, calls)):
        call(matrix[i % len(matrix)][None, :])
    times = []
    for i in range(calls):
        row = matrix[i % len(matrix)][None, :]
        started = time.perf_counter_ns()
        call(row)
        times.append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(times)


def _methods(
    scorer, booster, layouts: dict, table_caps: list[int]
) -> dict[str, Callable[[np.ndarray], np.ndarray | None]]:
    """Each method: matrix -> contributions (rows x features + 1), or None if not comparable."""
    import shap

    from features.scoring.treeshap import TABLE_MAX_FEATURES, shap_values

    explainer = shap.TreeExplainer(booster)
    methods: dict[str, Callable[[np.ndarray], np.ndarray | None]] = {
        "predict": lambda m: _no_contributions(booster.predict(m, raw_score=True)),
        "pred_contrib": lambda m: booster.predict(m, pred_contrib=True),
    }
    for cap in sorted({TABLE_MAX_FEATURES, 0, *table_caps}, reverse=True):
        if cap == TABLE_MAX_FEATURES:
            name = f"spotcheck tables d<={cap} (shipped)"
        else:
            name = f"spotcheck tables d<={cap}" if cap else "spotcheck closed form"
        paths = _layout(booster, layouts, name, cap)
        methods[name] = lambda m, p=paths: shap_values(p, m)
    methods["shap.TreeExplainer"] = lambda m: _with_bias(explainer, explainer.shap_values(m))
    try:
        internal = shap.TreeExplainer(booster)
        internal.model.model_type = "internal"  # force shap's own C++ TreeSHAP
        internal.shap_values(np.zeros((1, booster.num_feature())))
        methods["shap internal C++"] = lambda m: _with_bias(internal, internal.shap_values(m))
    except Exception as exc:  # noqa: BLE001 - any refusal is a finding to record
        methods["shap internal C++"] = _refused(f"{type(exc).__name__}: {exc}")
    if scorer is not None:
        methods["scorer.explain"] = lambda m: scorer.explain(m).contributions
    return methods


def _layout(booster, layouts: dict, name: str, cap: int):
    """``tree_paths`` of the booster, timed (the second build: numba is compiled by then)."""
    from features.scoring.treeshap import shap_values, tree_paths

    shap_values(tree_paths(booster, cap), np.zeros((1, booster.num_feature())))  # compile
    started = time.perf_counter()
    paths = tree_paths(booster, cap)
    layouts[name] = {
        "layout_seconds": time.perf_counter() - started,
        "table_mib": paths.table.nbytes / 2**20,
        "leaves_with_table": float(np.mean(paths.table_start >= 0)),
        "max_path_features": paths.max_path_features,
        "mean_path_features": float(np.mean(paths.leaf_slot_count)),
    }
    return paths


def _no_contributions(_: np.ndarray) -> None:
    """The bare prediction has no contributions to compare."""
    return None


def _refused(reason: str) -> Callable[[np.ndarray], np.ndarray | None]:
    def call(_: np.ndarray) -> np.ndarray | None:
        raise RuntimeError(reason)

    return call


def _with_bias(explainer, values: np.ndarray) -> np.ndarray:
    bias = np.full((len(values), 1), float(np.ravel(explainer.expected_value)[0]))
    return np.hstack([values, bias])


def measure(name: str, scorer, booster, matrix: np.ndarray, args) -> dict:
    """Every method on one model: throughput, latency, agreement with pred_contrib."""
    batch = matrix[: args.batch]
    reference = booster.predict(batch, pred_contrib=True)
    shape = booster.dump_model()["tree_info"]
    out = {
        "model": name,
        "trees": booster.num_trees(),
        "mean_leaves": float(np.mean([t["num_leaves"] for t in shape])),
        "features": booster.num_feature(),
        "batch": len(batch),
        "methods": {},
    }
    predict_seconds = None
    layouts: dict = {}
    for method, call in _methods(scorer, booster, layouts, args.table_caps).items():
        try:
            result = call(batch)
        except Exception as exc:  # noqa: BLE001 - a refusal is recorded
            out["methods"][method] = {"refused": str(exc)[:300]}
            print(f"{name} / {method}: refused ({str(exc)[:120]})", flush=True)
            continue
        seconds = _best_seconds(lambda c=call: c(batch), args.repeat)
        if method == "predict":
            predict_seconds = seconds
        entry = {
            "stores_per_second": len(batch) / seconds,
            "single_store_ms": _median_ms(call, matrix, args.calls),
            "max_abs_diff_vs_pred_contrib": (
                None if result is None else float(np.max(np.abs(result - reference)))
            ),
        }
        if predict_seconds:
            entry["cost_vs_predict"] = seconds / predict_seconds
        entry.update(layouts.get(method, {}))
        out["methods"][method] = entry
        print(f"{name} / {method}: {json.dumps(entry)}", flush=True)
    return out


def _train_model(frame: pd.DataFrame, spec, truth: Path, shape: str, seed: int):
    """A LightGBM of ``shape`` (``TREESxLEAVES`` or ``TREESxLEAVESdDEPTH``) on the table.

    Trained on a seeded 80% of the stores against the truth (all threads); the other 20%
    give the holdout PR-AUC, so a shape's speed can be weighed against what it costs.

    Returns:
        ``(booster, encoded table, holdout PR-AUC)``.
    """
    import lightgbm as lgb
    from sklearn.metrics import average_precision_score

    from features.scoring.encoding import category_levels, encode_features

    trees, rest = shape.split("x")
    leaves, _, depth = rest.partition("d")
    labels = pd.read_parquet(truth)[["store_id", "is_counterfeit"]]
    y = frame[["store_id"]].merge(labels, on="store_id", how="left")["is_counterfeit"]
    y = y.fillna(0).to_numpy()
    levels = category_levels(frame, spec)
    matrix = encode_features(frame, spec, levels)
    train = np.random.default_rng(seed).random(len(matrix)) < 0.8
    params = {
        "objective": "binary", "num_leaves": int(leaves), "max_depth": int(depth or -1),
        "learning_rate": 0.05, "verbosity": -1, "deterministic": True, "seed": seed,
        "min_data_in_leaf": 20,
    }  # fmt: skip
    categorical = [j for j, f in enumerate(spec) if f.dtype == "category"]
    dataset = lgb.Dataset(matrix[train], y[train], categorical_feature=categorical)
    booster = lgb.train(params, dataset, num_boost_round=int(trees))
    holdout = booster.predict(matrix[~train], raw_score=True)
    return booster, matrix, float(average_precision_score(y[~train], holdout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models:/counterfeit-store-classifier@champion")
    parser.add_argument("--features", type=Path, required=True, help="a written feature table")
    parser.add_argument("--truth", type=Path, help="truth.parquet: also train a model here")
    parser.add_argument(
        "--shapes", nargs="+", default=["300x31"], metavar="TREESxLEAVES",
        help="models to train on the table with --truth: 300x31 (trees x leaves), 300x31d6 "
        "(and a depth cap)",
    )  # fmt: skip
    parser.add_argument(
        "--table-caps", nargs="*", type=int, default=[], metavar="D",
        help="also measure tables for leaves of at most D distinct path features",
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the measurements as JSON")
    args = parser.parse_args(argv)
    # One thread: set before LightGBM loads (reset_parameter on a loaded booster crashes).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import mlflow.pyfunc

    from features.scoring.encoding import encode_features
    from features.scoring.model import scorer_of

    frame = pd.read_parquet(args.features)
    scorer = scorer_of(mlflow.pyfunc.load_model(args.model))
    matrix = encode_features(frame, scorer.spec, scorer.levels_)
    rng = np.random.default_rng(args.seed)
    matrix = matrix[rng.permutation(len(matrix))]
    results = [measure("champion", scorer, scorer.booster_, matrix, args)]
    if args.truth is not None:
        from features.spec import FeatureSpec

        spec_file = args.features.with_name(args.features.name + ".spec.json")
        spec = FeatureSpec.from_json(spec_file.read_text())
        for shape in args.shapes:
            booster, big, pr_auc = _train_model(frame, spec, args.truth, shape, args.seed)
            print(f"{shape}: holdout PR-AUC {pr_auc:.4f}", flush=True)
            big = big[np.random.default_rng(args.seed).permutation(len(big))]
            results.append({**measure(shape, None, booster, big, args), "pr_auc": pr_auc})
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
