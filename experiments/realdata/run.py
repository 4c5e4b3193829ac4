"""Real-data check: spotcheck's own-data path against a plain LightGBM on the same splits.

For one converted data set (``experiments/realdata/README.md``) and each seed:

1. split the labelled nodes into a stratified test set (``--test-fraction``) and the rest;
2. **spotcheck**: ``spotcheck train --features --labels REST --links --trials N --seed S --json``
   (fresh SQLite MLflow and Optuna stores, a fresh model name), then ``spotcheck score`` of
   every node with the same links and the REST labels as known labels; ROC-AUC and PR-AUC of
   ``score`` on the test nodes. ``spotcheck_nolinks`` is the same without ``--links`` (what
   the link features add or cost);
3. **lightgbm**: a plain LightGBM on the raw node features only, trained on all REST labels
   (fixed parameters; rounds chosen by early stopping on a stratified 20% slice of REST, then
   refit on all of REST), same test nodes. **lightgbm_links** is the same plain LightGBM on the
   table ``spotcheck score`` builds (raw features + spotcheck's link columns, REST labels
   known): it separates what the link features bring from what spotcheck's training does.

It also records what the own-data path made of the links: which link columns are constant or
all-missing, how many neighbour-aggregate columns came out of how many numeric columns, what
``link_ring_size`` looks like, and how much of the booster's gain went to link columns.
Failures of the spotcheck commands (exit code and ``error:`` line) are recorded, not raised.

The spotcheck commands run as subprocesses of the worktree's code (``PYTHONPATH``), so the
runner measures whatever ``training/`` and ``features/`` hold when it is run.

Usage::

    SPOTCHECK_NUM_THREADS=1 flock /tmp/spotcheck-heavy.lock .venv/bin/python -m \\
        experiments.realdata.run --dataset facebook --root /work/scratch/realdata \\
        --seeds 0,1,2,3,4 --trials 10 --out /work/scratch/realdata/results-facebook.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[2]
KEY, LABEL = "store_id", "is_counterfeit"
LINK_PREFIX = "link_"
METHODS = ("spotcheck", "spotcheck_nolinks", "lightgbm", "lightgbm_links")
MARKER = ".realdata-run"
# The plain baseline's fixed parameters (written out, not imported from training/, so the
# baseline stays put when the training code changes).
BASELINE_PARAMS = {
    "objective": "binary",
    "metric": "average_precision",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
    "num_threads": 1,
}
BASELINE_MAX_ROUNDS, BASELINE_PATIENCE, BASELINE_VALIDATION = 1000, 50, 0.2


def split_labels(labels: pd.DataFrame, test_fraction: float, seed: int) -> tuple[pd.DataFrame, ...]:
    """Stratified (rest, test) split of the labelled nodes, sorted by store id."""
    rest, test = train_test_split(
        labels, test_size=test_fraction, stratify=labels[LABEL], random_state=seed
    )
    ordered = (part.sort_values(KEY).reset_index(drop=True) for part in (rest, test))
    return tuple(ordered)


def test_metrics(test: pd.DataFrame, scores: pd.Series) -> dict[str, float]:
    """ROC-AUC and PR-AUC (average precision) of ``scores`` (indexed by store) on ``test``."""
    y = test[LABEL].to_numpy()
    s = scores.reindex(test[KEY]).to_numpy(dtype=float)
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} test nodes got no score")
    return {"roc_auc": float(roc_auc_score(y, s)), "pr_auc": float(average_precision_score(y, s))}


# --- spotcheck ---------------------------------------------------------------------------


def cli_env(work: Path, dataset: str, threads: int, min_positives: int | None) -> dict[str, str]:
    """Environment of the spotcheck subprocesses: scratch stores, worktree code, one thread."""
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
        SPOTCHECK_EXPERIMENT=f"realdata-{dataset}",
        SPOTCHECK_NUM_THREADS=str(threads),
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    )
    if min_positives is not None:
        env["SPOTCHECK_MIN_POSITIVES"] = str(min_positives)
    return env


def spotcheck(
    command: list[str], env: dict[str, str], work: Path
) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``spotcheck COMMAND`` (the worktree's) in ``work``; return the process and seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "spotcheck.cli", *command],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    return done, time.perf_counter() - started


def failure(step: str, done: subprocess.CompletedProcess) -> dict[str, Any]:
    """What a failed command said: its exit code and ``error:`` line (or stderr's tail)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return {
        "status": "failed",
        "step": step,
        "exit_code": done.returncode,
        "error": errors[-1] if errors else "\n".join(lines[-5:]),
    }


def train_json(stdout: str) -> dict[str, Any]:
    """The ``--json`` summary ``spotcheck train`` printed (from its first ``{`` line)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("{"))
    return json.loads("\n".join(lines[start:]))


def run_spotcheck(
    data: Path,
    work: Path,
    name: str,
    labels_path: Path,
    test: pd.DataFrame,
    seed: int,
    trials: int,
    links: bool,
    env: dict[str, str],
) -> dict[str, Any]:
    """Train, register and score with spotcheck; metrics on the test nodes."""
    link_args = ["--links", str(data / "links.parquet")] if links else []
    train = [
        "train",
        "--features", str(data / "features.parquet"),
        "--labels", str(labels_path),
        *link_args,
        "--trials", str(trials),
        "--seed", str(seed),
        "--storage", f"sqlite:///{work / 'optuna.db'}",
        "--model-name", name,
        "--json",
    ]  # fmt: skip
    done, train_s = spotcheck(train, env, work)
    if done.returncode != 0:
        return {**failure("train", done), "train_s": train_s}
    summary = train_json(done.stdout)
    scores_path = work / f"scores-{name}.parquet"
    score = [
        "score",
        "--features", str(data / "features.parquet"),
        *link_args,
        "--labels", str(labels_path),
        "--model", summary["model_uri"],
        "--out", str(scores_path),
        "--top", "0",
    ]  # fmt: skip
    done, score_s = spotcheck(score, env, work)
    if done.returncode != 0:
        return {**failure("score", done), "train_s": train_s, "score_s": score_s}
    scores = pd.read_parquet(scores_path).set_index(KEY)["score"]
    holdout = summary["holdout_metrics"]
    return {
        "status": "ok",
        **test_metrics(test, scores),
        "train_s": round(train_s, 1),
        "score_s": round(score_s, 1),
        "wall_s": round(train_s + score_s, 1),
        "model_uri": summary["model_uri"],
        "calibration": summary["calibration"],
        "internal_split": summary["split"],
        "internal_holdout": {
            who: {k: holdout[who].get(k) for k in ("roc_auc", "pr_auc")} for who in holdout
        },
        "params": summary["params"],
        "notes": summary["notes"],
        "features": summary.get("recipe", {}).get("features"),
        "feature_selection": summary.get("recipe", {}).get("feature_selection_cv_pr_auc"),
        "distinct_scores": int(scores.nunique()),
        "gain": gain_shares(summary["model_uri"], env["MLFLOW_TRACKING_URI"]),
    }


def gain_shares(model_uri: str, tracking_uri: str) -> dict[str, Any]:
    """Share of the booster's total gain in link columns, and its five top features."""
    import mlflow

    from features.scoring.model import scorer_of

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)  # not whatever the environment's URI points at
    booster = scorer_of(mlflow.pyfunc.load_model(model_uri)).booster_
    gain = pd.Series(booster.feature_importance("gain"), index=booster.feature_name())
    total = float(gain.sum())
    top = gain.sort_values(ascending=False).head(5)
    return {
        "trees": booster.num_trees(),
        "features_used": int((gain > 0).sum()),
        "link_share": round(float(gain[gain.index.str.startswith(LINK_PREFIX)].sum()) / total, 4)
        if total > 0
        else None,
        "top": {k: round(float(v) / total, 4) for k, v in top.items()} if total > 0 else {},
    }


# --- plain LightGBM -----------------------------------------------------------------------


def run_lightgbm(
    features: pd.DataFrame, rest: pd.DataFrame, test: pd.DataFrame, seed: int
) -> dict[str, Any]:
    """Plain LightGBM on the raw features: rounds by early stopping, refit on all of ``rest``."""
    started = time.perf_counter()
    x = features.set_index(KEY)
    params = {**BASELINE_PARAMS, "seed": seed}
    fit, stop = train_test_split(
        rest, test_size=BASELINE_VALIDATION, stratify=rest[LABEL], random_state=seed
    )
    train_set = lgb.Dataset(x.loc[fit[KEY]], fit[LABEL].to_numpy(), params=params)
    stop_set = lgb.Dataset(x.loc[stop[KEY]], stop[LABEL].to_numpy(), reference=train_set)
    probe = lgb.train(
        params,
        train_set,
        num_boost_round=BASELINE_MAX_ROUNDS,
        valid_sets=[stop_set],
        callbacks=[lgb.early_stopping(BASELINE_PATIENCE, verbose=False)],
    )
    rounds = max(1, probe.best_iteration)
    full = lgb.Dataset(x.loc[rest[KEY]], rest[LABEL].to_numpy(), params=params)
    booster = lgb.train(params, full, num_boost_round=rounds)
    scores = pd.Series(booster.predict(x.loc[test[KEY]]), index=test[KEY].to_numpy())
    return {
        "status": "ok",
        **test_metrics(test, scores),
        "rounds": rounds,
        "wall_s": round(time.perf_counter() - started, 2),
    }


def run_lightgbm_links(
    data: Path, labels_path: Path, rest: pd.DataFrame, test: pd.DataFrame, seed: int
) -> dict[str, Any]:
    """Plain LightGBM on raw features + spotcheck's link columns (``scoring_table``)."""
    from features.byo import scoring_table

    started = time.perf_counter()
    try:
        table = scoring_table(data / "features.parquet", data / "links.parquet", labels_path)
    except Exception as exc:  # noqa: BLE001 - a finding to record, not a reason to stop
        return {
            "status": "failed",
            "step": "scoring_table",
            "error": f"{type(exc).__name__}: {exc}",
        }
    link_s = time.perf_counter() - started
    result = run_lightgbm(table, rest, test, seed)
    return {**result, "wall_s": round(result["wall_s"] + link_s, 2)}


# --- what the own-data path made of the links ---------------------------------------------


def link_diagnostics(data: Path, labels_path: Path, rest: pd.DataFrame) -> dict[str, Any]:
    """Link columns of the scoring table (all nodes; and the labelled REST rows) described.

    Uses ``features.byo.scoring_table``, the function ``spotcheck score`` uses; training
    computes the same columns for its rows through ``own_link_features``.
    """
    from features.byo import scoring_table

    table = scoring_table(data / "features.parquet", data / "links.parquet", labels_path)
    features = pd.read_parquet(data / "features.parquet")
    numeric = [
        c for c in features.columns if c != KEY and pd.api.types.is_numeric_dtype(features[c].dtype)
    ]
    link_columns = [c for c in table.columns if c.startswith(LINK_PREFIX)]
    training_rows = table[table[KEY].isin(set(rest[KEY]))]

    def describe(frame: pd.DataFrame) -> dict[str, list[str]]:
        missing = [c for c in link_columns if frame[c].isna().all()]
        constant = [
            c for c in link_columns if c not in missing and frame[c].nunique(dropna=False) <= 1
        ]
        return {"all_missing": missing, "constant": constant}

    ring = table["link_ring_size"] if "link_ring_size" in table.columns else pd.Series([])
    stats = ("mean", "max", "min", "std")
    aggregates = [
        c for c in link_columns
        if c.startswith((f"{LINK_PREFIX}nb_", f"{LINK_PREFIX}nb2_"))
        and c.split("_")[2] in stats
    ]  # fmt: skip
    return {
        "link_columns": link_columns,
        "all_nodes": describe(table),
        "training_rows": describe(training_rows),
        "neighbour_aggregate_columns": len(aggregates),
        "aggregated_feature_columns": len({c.split("_", 3)[3] for c in aggregates}),
        "two_hop_columns": sum(c.startswith(f"{LINK_PREFIX}nb2_") for c in link_columns),
        "gcn_columns": sum(c.startswith(f"{LINK_PREFIX}gcn_") for c in link_columns),
        "numeric_feature_columns": len(numeric),
        "ring_size": {
            "min": int(ring.min()),
            "median": float(ring.median()),
            "max": int(ring.max()),
            "distinct": int(ring.nunique()),
            "share_at_max": round(float((ring == ring.max()).mean()), 4),
            "share_of_1": round(float((ring == 1).mean()), 4),
        }
        if len(ring)
        else None,
        "known_counterfeit_nonzero_share": round(
            float((table["link_known_counterfeit"] > 0).mean()), 4
        )
        if "link_known_counterfeit" in table.columns
        else None,
    }


# --- the whole check ----------------------------------------------------------------------


def fresh_workdir(work: Path) -> None:
    """Empty ``work`` for a new run; refuse a non-empty directory this runner did not make."""
    if work.exists() and any(work.iterdir()):
        if not (work / MARKER).exists():
            raise SystemExit(f"{work} is not empty and was not made by this runner; choose another")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("scratch output of experiments.realdata.run\n")


def run_seed(
    dataset: str,
    data: Path,
    work: Path,
    labels: pd.DataFrame,
    features: pd.DataFrame,
    seed: int,
    args: argparse.Namespace,
    env: dict[str, str],
) -> dict[str, Any]:
    """Every method on one seed's split."""
    rest, test = split_labels(labels, args.test_fraction, seed)
    labels_path = work / f"labels-seed{seed}.parquet"
    rest.to_parquet(labels_path, index=False)
    record: dict[str, Any] = {
        "seed": seed,
        "rest_labels": len(rest),
        "rest_positives": int(rest[LABEL].sum()),
        "test_nodes": len(test),
        "test_positives": int(test[LABEL].sum()),
        "methods": {},
    }
    for method in args.methods:
        print(f"[{dataset} seed {seed}] {method} ...", file=sys.stderr, flush=True)
        if method == "lightgbm":
            result = run_lightgbm(features, rest, test, seed)
        elif method == "lightgbm_links":
            result = run_lightgbm_links(data, labels_path, rest, test, seed)
        else:
            links = method == "spotcheck"
            name = f"realdata-{dataset}-{method}-seed{seed}"
            result = run_spotcheck(
                data, work, name, labels_path, test, seed, args.trials, links, env
            )
        record["methods"][method] = result
        shown = {k: result.get(k) for k in ("status", "roc_auc", "pr_auc", "wall_s", "error")}
        print(f"[{dataset} seed {seed}] {method}: {shown}", file=sys.stderr, flush=True)
    try:
        record["links"] = link_diagnostics(data, labels_path, rest)
    except Exception as exc:  # noqa: BLE001 - a finding to record, not a reason to stop
        record["links"] = {"error": f"{type(exc).__name__}: {exc}"}
    return record


def mean_sd(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (None when undefined)."""
    if not values:
        return {"mean": None, "sd": None}
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": round(statistics.fmean(values), 4), "sd": None if sd is None else round(sd, 4)}


def paired(runs: list[dict[str, Any]], method: str, other: str) -> dict[str, Any]:
    """Per-seed differences ``method - other`` of ROC-AUC and PR-AUC, over seeds both ran."""
    both = [
        (r["methods"][method], r["methods"][other])
        for r in runs
        if r["methods"][method]["status"] == "ok" and r["methods"][other]["status"] == "ok"
    ]
    return {
        metric: mean_sd([a[metric] - b[metric] for a, b in both])
        for metric in ("roc_auc", "pr_auc")
    }


def summarise(runs: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """Per method: mean ± sd of ROC-AUC, PR-AUC and wall time over the seeds that ran."""
    out = {}
    for method in methods:
        results = [r["methods"][method] for r in runs]
        ok = [r for r in results if r["status"] == "ok"]
        out[method] = {
            "seeds_ok": len(ok),
            "seeds_failed": len(results) - len(ok),
            "roc_auc": mean_sd([r["roc_auc"] for r in ok]),
            "pr_auc": mean_sd([r["pr_auc"] for r in ok]),
            "wall_s": mean_sd([r["wall_s"] for r in ok]),
            "errors": sorted({r["error"] for r in results if r["status"] != "ok"}),
        }
        if method != "lightgbm" and "lightgbm" in methods:
            out[method]["paired_minus_lightgbm"] = paired(runs, method, "lightgbm")
    out["test_positive_rate"] = mean_sd([r["test_positives"] / r["test_nodes"] for r in runs])
    return out


def markdown(dataset: str, summary: dict[str, Any], methods: list[str]) -> str:
    """The summary as a Markdown table."""

    def cell(stat: dict[str, float | None]) -> str:
        if stat["mean"] is None:
            return "–"
        return f"{stat['mean']:.3f}" + ("" if stat["sd"] is None else f" ± {stat['sd']:.3f}")

    lines = [
        f"| {dataset} | ROC-AUC | PR-AUC | PR-AUC minus lightgbm (paired) | wall s / seed "
        "| seeds ok / failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method in methods:
        s = summary[method]
        wall = "–" if s["wall_s"]["mean"] is None else f"{s['wall_s']['mean']:.2f}"
        gap = cell(s["paired_minus_lightgbm"]["pr_auc"]) if "paired_minus_lightgbm" in s else "–"
        lines.append(
            f"| {method} | {cell(s['roc_auc'])} | {cell(s['pr_auc'])} | {gap} | {wall} | "
            f"{s['seeds_ok']} / {s['seeds_failed']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="converted set under ROOT/<dataset>/data")
    parser.add_argument("--root", type=Path, default=Path("/work/scratch/realdata"))
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument(
        "--min-positives",
        type=int,
        default=None,
        help="set SPOTCHECK_MIN_POSITIVES for spotcheck (default: spotcheck's own)",
    )
    parser.add_argument("--threads", type=int, default=1, help="SPOTCHECK_NUM_THREADS")
    parser.add_argument("--work", type=Path, default=None, help="default ROOT/<dataset>/runs")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s) {', '.join(sorted(unknown))}; choose from {METHODS}")
    seeds = [int(s) for s in args.seeds.split(",") if s]

    data = args.root / args.dataset / "data"
    work = args.work or args.root / args.dataset / "runs"
    fresh_workdir(work)
    env = cli_env(work, args.dataset, args.threads, args.min_positives)
    features = pd.read_parquet(data / "features.parquet")
    labels = pd.read_parquet(data / "all_labels.parquet")
    meta = json.loads((data / "meta.json").read_text())

    started = time.perf_counter()
    runs = [run_seed(args.dataset, data, work, labels, features, s, args, env) for s in seeds]
    summary = summarise(runs, args.methods)
    result = {
        "dataset": args.dataset,
        "meta": meta,
        "settings": {
            "seeds": seeds,
            "trials": args.trials,
            "test_fraction": args.test_fraction,
            "min_positives": args.min_positives,
            "threads": args.threads,
            "baseline_params": BASELINE_PARAMS,
        },
        "total_s": round(time.perf_counter() - started, 1),
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(markdown(args.dataset, summary, args.methods))
    print(f"total {result['total_s']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
