"""Benchmark training: libraries at matched settings, Optuna with and without pruning, end to end.

1. Data: a synthetic marketplace (``features.synth.generate_marketplace``), its feature table
   as of the end of the histories (``features.build.build_feature_table``) and, for this
   benchmark only, a label for EVERY store from ``truth.parquet`` (production labels cover a
   few percent of stores). The labels carry no ``labeled_at``, so training uses its stratified
   split. Both files are cached in the work directory; ``--features/--labels`` reuse any pair.
2. Libraries: LightGBM (the project's ``fit_booster``), XGBoost ``hist`` and scikit-learn
   ``HistGradientBoostingClassifier`` on the same split and settings (``training_libs``).
3. Tuning: the project's ``training.tune.tune`` twice with the same seed and trial count, once
   as shipped (median pruner) and once with ``optuna.pruners.NopPruner`` patched in (``tune``
   has no pruning switch). Per trial: end time and best-so-far validation PR-AUC. The unpruned
   run's learning curves are then replayed under other pruner settings (same proposals, so
   an estimate) to show what would reach the unpruned best sooner.
4. End to end: ``spotcheck train --features F --labels L --trials N`` in a subprocess with
   fresh SQLite MLflow and Optuna stores and ``SPOTCHECK_NUM_THREADS`` = ``--threads``.

Usage (heavy runs must hold the shared lock):

    flock /tmp/spotcheck-heavy.lock uv run --frozen python -m \\
        experiments.benchmarks.bench_training --stores 200000 --seed 11 --trials 30 \\
        --workdir /work/scratch/benchtrain

Prints Markdown tables and writes everything (with per-trial traces) to
``<workdir>/results-<stores>-s<seed>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from unittest import mock

import numpy as np
import optuna
import pandas as pd
from mlflow.tracking import MlflowClient

from experiments.benchmarks.training_libs import LibraryResult, Matrices, Stopwatch, compare
from features.model_contract import category_levels, encode_features
from training import tune
from training.dataset import LABEL, Split, TrainingData, load_own_data, split
from training.model import lgb_dataset
from training.settings import load_settings

# The issue's tolerance first, then tighter ones (PR-AUC saturates on synthetic data).
TOLERANCES = (0.005, 0.001, 0.0005)
NO_PRUNING = "none"
# Pruner settings replayed on the unpruned learning curves: (percentile, startup trials,
# warmup rounds); steps are boosting rounds.
REPLAYS = {
    NO_PRUNING: (None, 0, 0),
    "shipped: median, 5 startup, warmup 30": (50.0, 5, 30),
    "median, 5 startup, warmup 100": (50.0, 5, 100),
    "median, 5 startup, warmup 200": (50.0, 5, 200),
    "median, 10 startup, warmup 100": (50.0, 10, 100),
    "percentile 25, 5 startup, warmup 100": (25.0, 5, 100),
    "percentile 75, 5 startup, warmup 30": (75.0, 5, 30),
}


def log(message: str) -> None:
    """Progress line on stderr (stdout carries only the Markdown report)."""
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically: a temp file in the same directory, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".parquet.tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def code_digest(package: str) -> str:
    """Short SHA-256 of a package's Python sources, to tell which code produced a cache."""
    root = Path(__file__).resolve().parents[2] / package
    digest = hashlib.sha256()
    for path in sorted(root.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def prepare_table(workdir: Path, stores: int, seed: int) -> tuple[Path, Path]:
    """Synthesize the marketplace and write features + all-store labels (cached).

    Returns:
        Paths of ``features.parquet`` (``store_id`` + features) and ``labels.parquet``
        (``store_id``, ``is_counterfeit`` for every store, no ``labeled_at``).
    """
    from features.build import build_feature_table
    from features.synth import generate_marketplace

    table_dir = workdir / f"table-{stores}-s{seed}"
    features_path, labels_path = table_dir / "features.parquet", table_dir / "labels.parquet"
    made_by = table_dir / "features_code.txt"
    if features_path.is_file() and labels_path.is_file():
        log(f"reusing cached table {table_dir}")
        if made_by.is_file() and made_by.read_text() != code_digest("features"):
            log("warning: features/ changed since the cached table was built; delete it to rebuild")
        return features_path, labels_path
    histories = workdir / f"m{stores}-s{seed}"
    if not (histories / "synth.json").is_file():
        log(f"synthesizing {stores} stores (seed {seed}) into {histories}")
        started = time.perf_counter()
        generate_marketplace(histories, stores, seed, force=True)
        log(f"synth took {time.perf_counter() - started:.0f} s")
    log("building the feature table as of the end of the histories")
    started = time.perf_counter()
    table, spec = build_feature_table(histories)
    log(
        f"features: {table.shape[0]} rows x {len(spec)} features in "
        f"{time.perf_counter() - started:.0f} s"
    )
    truth = pd.read_parquet(histories / "truth.parquet", columns=["store_id", LABEL])
    labels = truth[truth["store_id"].isin(set(table["store_id"]))]
    missing = len(truth) - len(labels)
    if missing:
        log(f"note: {missing} stores of truth.parquet have no feature row (not yet open)")
    _write_parquet(labels.reset_index(drop=True), labels_path)
    _write_parquet(table.drop(columns=["as_of"]), features_path)
    made_by.write_text(code_digest("features"))
    return features_path, labels_path


def without_features(features: Path, drop: list[str]) -> Path:
    """A copy of the feature table without ``drop`` (cached next to it)."""
    frame = pd.read_parquet(features)
    unknown = sorted(set(drop) - set(frame.columns))
    if unknown:
        raise SystemExit(f"--drop-features: not in {features}: {', '.join(unknown)}")
    tag = hashlib.sha256(",".join(sorted(drop)).encode()).hexdigest()[:8]
    path = features.with_name(f"{features.stem}-drop-{tag}.parquet")
    if not path.is_file():
        _write_parquet(frame.drop(columns=drop), path)
    return path


def matrices(parts: Split, data: TrainingData, levels: dict[str, list[str]]) -> Matrices:
    """Encode the three parts the way the project's booster sees them."""

    def encode(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return encode_features(frame, data.spec, levels), frame[LABEL].to_numpy("float64")

    (xt, yt), (xv, yv), (xs, ys) = map(encode, (parts.train, parts.validation, parts.test))
    categorical = [i for i, f in enumerate(data.spec) if f.dtype == "category"]
    return Matrices(xt, yt, xv, yv, xs, ys, categorical)


# --------------------------------------------------------------------------- tuning


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a study, timed from the start of the ``tune`` call."""

    number: int
    state: str
    value: float | None
    last_step: int | None
    finished_s: float
    duration_s: float
    rounds_so_far: int
    best_so_far: float | None
    curve: dict[int, float]


@dataclass(frozen=True)
class StudyTrace:
    """A whole tuning run."""

    label: str
    seconds: float
    cpu_seconds: float
    trials: list[TrialRecord]

    @property
    def best(self) -> float:
        """Best validation PR-AUC of the run."""
        return max(t.value for t in self.trials if t.value is not None)

    def time_to_reach(self, level: float) -> float | None:
        """Seconds until the best-so-far first reached ``level`` (None if never)."""
        first = self._first_reaching(level)
        return None if first is None else first.finished_s

    def rounds_to_reach(self, level: float) -> int | None:
        """Boosting rounds (all trials so far) until the best-so-far reached ``level``.

        Unlike seconds, rounds do not depend on what else the machine was running.
        """
        first = self._first_reaching(level)
        return None if first is None else first.rounds_so_far

    def _first_reaching(self, level: float) -> TrialRecord | None:
        for t in self.trials:
            if t.best_so_far is not None and t.best_so_far >= level:
                return t
        return None

    def count(self, state: str) -> int:
        """Number of trials in a state (``COMPLETE``, ``PRUNED``, ``FAIL``)."""
        return sum(t.state == state for t in self.trials)


def run_study(
    parts: Split,
    data: TrainingData,
    levels: dict[str, list[str]],
    *,
    seed: int,
    trials: int,
    threads: int,
    pruned: bool,
    workdir: Path,
) -> StudyTrace:
    """Run ``training.tune.tune`` on fresh SQLite Optuna + MLflow stores and trace it."""
    label = "pruned (median)" if pruned else "unpruned (NopPruner)"
    where = workdir / ("tune-pruned" if pruned else "tune-unpruned")
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    storage = f"sqlite:///{where / 'optuna.db'}"
    client = MlflowClient(tracking_uri=f"sqlite:///{where / 'mlflow.db'}")
    experiment_id = client.create_experiment(
        "bench-training", artifact_location=(where / "artifacts").as_uri()
    )
    parent = client.create_run(experiment_id, run_name=label).info.run_id
    config = tune.TuneConfig(
        seed=seed,
        trials=trials,
        timeout=None,
        storage=storage,
        study_name="bench",
        num_threads=threads,
    )
    log(f"tuning {label}: {trials} trials, {threads} threads")
    # tune() builds its pruner inline; patching the class is the only way to switch it off.
    patch = (
        contextlib.nullcontext()
        if pruned
        else mock.patch.object(
            optuna.pruners, "MedianPruner", lambda **_: optuna.pruners.NopPruner()
        )
    )
    started_wall = datetime.now()  # Optuna stamps trials with naive local datetime.now()
    with patch, Stopwatch() as clock:
        tune.tune(parts, data.spec, levels, config, client, experiment_id, parent)
    client.set_terminated(parent)
    study = optuna.load_study(study_name="bench", storage=storage)
    return StudyTrace(label, clock.wall, clock.cpu, _records(study, started_wall))


def _records(study: optuna.Study, started: datetime) -> list[TrialRecord]:
    records, best, rounds = [], None, 0
    done = [t for t in study.trials if t.datetime_complete is not None]
    for t in sorted(done, key=lambda t: t.datetime_complete):
        if t.state == optuna.trial.TrialState.COMPLETE:
            best = t.value if best is None else max(best, t.value)
        # Reports come every REPORT_EVERY_ROUNDS rounds, so this undercounts by < 10 a trial.
        rounds += (t.last_step or 0) + 1
        records.append(
            TrialRecord(
                number=t.number,
                state=t.state.name,
                value=t.value,
                last_step=t.last_step,
                finished_s=(t.datetime_complete - started).total_seconds(),
                duration_s=t.duration.total_seconds(),
                rounds_so_far=rounds,
                best_so_far=best,
                curve=dict(t.intermediate_values),
            )
        )
    return records


def replay(
    trace: StudyTrace, percentile: float | None, startup: int, warmup: int, overhead_s: float
) -> dict:
    """Replay Optuna's percentile pruner on an unpruned run's learning curves.

    The trials keep the unpruned run's proposals (a real pruned run's TPE would propose
    differently after the first prune), and a trial pruned at round ``s`` is charged its
    dataset overhead plus the share ``(s + 1) / (last round + 1)`` of its boosting time.
    The clock sums trial durations only (no study or logging overhead between trials).

    Args:
        trace: An unpruned run (every trial complete, learning curve reported).
        percentile: Optuna ``PercentilePruner`` percentile (50 = median); None = no pruning.
        startup: ``n_startup_trials``.
        warmup: ``n_warmup_steps`` (boosting rounds).
        overhead_s: Per-trial Dataset construction time, spent even by pruned trials.

    Returns:
        ``reach_s`` (seconds until the best-so-far is within each of ``TOLERANCES`` of the
        unpruned best, or to the best itself under key 0.0), total seconds, trials pruned
        and the best value.
    """
    complete: list[TrialRecord] = []
    clock, rounds, best, pruned = 0.0, 0, None, 0
    reach: dict[float, float | None] = {tol: None for tol in (*TOLERANCES, 0.0)}
    reach_rounds: dict[float, int | None] = dict.fromkeys(reach)
    for t in trace.trials:
        steps = sorted(t.curve)
        cut = None
        if percentile is not None and len(complete) >= startup:
            running = -np.inf
            for step in steps:
                running = max(running, t.curve[step])
                if step < warmup:
                    continue
                others = [c.curve[step] for c in complete if step in c.curve]
                # Optuna keeps a maximizing trial unless it is below the (100 - p)th percentile.
                if others and running < np.percentile(others, 100.0 - percentile):
                    cut = step
                    break
        if cut is None:
            clock += t.duration_s
            rounds += steps[-1] + 1
            complete.append(t)
            if t.value is not None:
                best = t.value if best is None else max(best, t.value)
        else:
            pruned += 1
            boosting = max(t.duration_s - overhead_s, 0.0)
            clock += min(overhead_s, t.duration_s) + boosting * (cut + 1) / (steps[-1] + 1)
            rounds += cut + 1
        for tol, when in reach.items():
            if when is None and best is not None and best >= trace.best - tol - 1e-12:
                reach[tol], reach_rounds[tol] = clock, rounds
    return {
        "reach_s": reach,
        "reach_rounds": reach_rounds,
        "total_s": clock,
        "total_rounds": rounds,
        "pruned": pruned,
        "best": best,
    }


def dataset_overhead(parts: Split, data: TrainingData, levels: dict[str, list[str]]) -> float:
    """Seconds each trial spends building its LightGBM train + validation Datasets."""
    started = time.perf_counter()
    train = lgb_dataset(parts.train, data.spec, levels)
    lgb_dataset(parts.validation, data.spec, levels, reference=train).construct()
    return time.perf_counter() - started


# --------------------------------------------------------------------------- end to end


def end_to_end(features: Path, labels: Path, trials: int, seed: int, threads: int, workdir: Path):
    """Time ``spotcheck train`` on fresh tracking and study stores.

    Returns:
        Wall seconds, CPU seconds of the subprocess, and its ``--json`` summary.
    """
    where = workdir / "e2e"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{where / 'mlflow.db'}",
        "SPOTCHECK_OPTUNA_STORAGE": f"sqlite:///{where / 'optuna.db'}",
        "SPOTCHECK_NUM_THREADS": str(threads),
    }
    command = [
        str(Path(sys.executable).with_name("spotcheck")),
        "train",
        "--features",
        str(features),
        "--labels",
        str(labels),
        "--trials",
        str(trials),
        "--seed",
        str(seed),
        "--json",
    ]
    log(f"end to end: {' '.join(command[1:])} (SPOTCHECK_NUM_THREADS={threads})")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"spotcheck train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, cpu, json.loads(done.stdout)


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def library_table(results: list[LibraryResult]) -> str:
    """Markdown table of the library comparison, time ratios relative to LightGBM."""
    base = results[0].fit_seconds
    lines = [
        "| library | fit s | CPU s | × LightGBM | best round / grown | ms per round "
        "| test PR-AUC | test ROC-AUC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.library} | {r.fit_seconds:.1f} | {r.fit_cpu_seconds:.1f} "
            f"| {r.fit_seconds / base:.2f} "
            f"| {r.best_round} / {r.rounds_grown} | {1000 * r.seconds_per_round:.1f} "
            f"| {r.test_pr_auc:.4f} | {r.test_roc_auc:.4f} |"
        )
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def tuning_summary(pruned: StudyTrace, unpruned: StudyTrace) -> dict:
    """Headline figures of pruning vs none, at the issue's tolerance and tighter ones."""
    reach_best = unpruned.time_to_reach(unpruned.best)
    rounds_best = unpruned.rounds_to_reach(unpruned.best)
    sweep = []
    for tol in TOLERANCES:
        target = unpruned.best - tol
        reach_pruned = pruned.time_to_reach(target)
        rounds_pruned = pruned.rounds_to_reach(target)
        sweep.append(
            {
                "tolerance": tol,
                "target": target,
                "unpruned_time_to_target_s": unpruned.time_to_reach(target),
                "pruned_time_to_target_s": reach_pruned,
                "ratio_to_unpruned_best": _ratio(reach_pruned, reach_best),
                "unpruned_rounds_to_target": unpruned.rounds_to_reach(target),
                "pruned_rounds_to_target": rounds_pruned,
                "rounds_ratio_to_unpruned_best": _ratio(rounds_pruned, rounds_best),
            }
        )
    return {
        "unpruned_best": unpruned.best,
        "pruned_best": pruned.best,
        "unpruned_time_to_best_s": reach_best,
        "unpruned_rounds_to_best": rounds_best,
        "pruned_total_s": pruned.seconds,
        "unpruned_total_s": unpruned.seconds,
        "sweep": sweep,
    }


def tuning_tables(
    pruned: StudyTrace, unpruned: StudyTrace, summary: dict, replays: dict[str, dict]
) -> str:
    """Markdown: the two runs, the tolerance sweep, trial-by-trial traces, pruner replays."""
    s = summary
    out = [
        "| run | total s | CPU s | complete / pruned | best val PR-AUC | s to its best |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for trace in (unpruned, pruned):
        out.append(
            f"| {trace.label} | {trace.seconds:.0f} | {trace.cpu_seconds:.0f} "
            f"| {trace.count('COMPLETE')} / "
            f"{trace.count('PRUNED')} | {trace.best:.4f} "
            f"| {_fmt(trace.time_to_reach(trace.best), '.0f')} |"
        )
    out += [
        "",
        f"Time until the best-so-far validation PR-AUC is within a tolerance of the unpruned "
        f"best ({s['unpruned_best']:.4f}, reached after {_fmt(s['unpruned_time_to_best_s'], '.0f')}"
        f" s and {_fmt(s['unpruned_rounds_to_best'], 'd')} boosting rounds summed over trials); "
        "the issue's target is tolerance 0.005 and ratio ≤ 0.50:",
        "",
        "| tolerance | level | unpruned s | pruned s | pruned / unpruned s-to-best "
        "| unpruned rounds | pruned rounds | pruned / unpruned rounds-to-best |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in s["sweep"]:
        out.append(
            f"| {row['tolerance']} | {row['target']:.4f} "
            f"| {_fmt(row['unpruned_time_to_target_s'], '.0f')} "
            f"| {_fmt(row['pruned_time_to_target_s'], '.0f')} "
            f"| {_fmt(row['ratio_to_unpruned_best'], '.2f')} "
            f"| {_fmt(row['unpruned_rounds_to_target'], 'd')} "
            f"| {_fmt(row['pruned_rounds_to_target'], 'd')} "
            f"| {_fmt(row['rounds_ratio_to_unpruned_best'], '.2f')} |"
        )
    out += [
        "",
        "Trial by trial (end = seconds from the start of tuning; best = best-so-far val "
        "PR-AUC; P*n* = pruned at round *n*):",
        "",
        "| trial | unpruned value | last round | end s | best | pruned-run value | end s | best |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_number = {t.number: t for t in pruned.trials}
    for u in unpruned.trials:
        p = by_number.get(u.number)
        p_value = "–"
        if p is not None:
            p_value = f"P{p.last_step}" if p.state == "PRUNED" else _fmt(p.value, ".4f")
        out.append(
            f"| {u.number} | {_fmt(u.value, '.4f')} | {_fmt(u.last_step, 'd')} "
            f"| {u.finished_s:.0f} | {_fmt(u.best_so_far, '.4f')} | {p_value} "
            f"| {_fmt(p and p.finished_s, '.0f')} | {_fmt(p and p.best_so_far, '.4f')} |"
        )
    none_s = replays[NO_PRUNING]["reach_s"][0.0]
    none_rounds = replays[NO_PRUNING]["reach_rounds"][0.0]
    header = " | ".join(f"within {tol}: s (×) / rounds (×)" for tol in TOLERANCES)
    out += [
        "",
        "Pruner settings replayed on the unpruned run's learning curves (same proposals, "
        "trial time only; an estimate). Time and rounds until the best-so-far is within the "
        "tolerance of the unpruned best; × = ratio to the unpruned replay's time (rounds) to "
        "its best:",
        "",
        f"| pruner | pruned trials | {header} | total s / rounds | best |",
        "|---|---:|" + "---:|" * len(TOLERANCES) + "---:|---:|",
    ]
    for name, r in replays.items():
        cells = " | ".join(
            f"{_fmt(r['reach_s'][tol], '.0f')} ({_fmt(_ratio(r['reach_s'][tol], none_s), '.2f')})"
            f" / {_fmt(r['reach_rounds'][tol], 'd')} "
            f"({_fmt(_ratio(r['reach_rounds'][tol], none_rounds), '.2f')})"
            for tol in TOLERANCES
        )
        out.append(
            f"| {name} | {r['pruned']} | {cells} | {r['total_s']:.0f} / {r['total_rounds']} "
            f"| {_fmt(r['best'], '.4f')} |"
        )
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="fits per library (fastest kept)")
    parser.add_argument("--features", type=Path, help="reuse this feature table")
    parser.add_argument("--labels", type=Path, help="reuse these labels (with --features)")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "spotcheck-bench-training"
    )
    parser.add_argument(
        "--drop-features",
        default="",
        help="comma-separated features to leave out (e.g. synthetic-data giveaways)",
    )
    parser.add_argument("--skip-libs", action="store_true", help="skip the library comparison")
    parser.add_argument("--skip-tuning", action="store_true", help="skip pruning vs none")
    parser.add_argument("--skip-e2e", action="store_true", help="skip spotcheck train")
    args = parser.parse_args(argv)
    if (args.features is None) != (args.labels is None):
        parser.error("--features and --labels go together")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    if args.features is not None:
        features, labels = args.features, args.labels
    else:
        features, labels = prepare_table(args.workdir, args.stores, args.seed)
    drop = [c.strip() for c in args.drop_features.split(",") if c.strip()]
    if drop:
        features = without_features(features, drop)
    data = load_own_data(features, labels)
    parts = split(data, args.seed, load_settings())
    levels = category_levels(parts.train, data.spec)
    sizes = parts.describe()
    log(f"split: {sizes}")
    results: dict = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "features": str(features),
        "dropped_features": drop,
        "labels": str(labels),
        "rows": len(data.frame),
        "n_features": len(data.spec),
        "split": sizes,
        "loadavg_start": load_start,
        "code": {p: code_digest(p) for p in ("features", "training")},
    }
    report = [
        f"Data: {len(data.frame):,} labelled stores × {len(data.spec)} features, "
        f"{sizes['split_method']} split: train {sizes['train_rows']:,} "
        f"({sizes['train_positives']:,} positive), validation {sizes['validation_rows']:,} "
        f"({sizes['validation_positives']:,}), test {sizes['test_rows']:,} "
        f"({sizes['test_positives']:,}). Threads: {args.threads}."
        + (f" Left out: {', '.join(drop)}." if drop else ""),
        "",
    ]

    if not args.skip_libs:
        log("library comparison")
        libs = compare(matrices(parts, data, levels), args.seed, args.threads, args.repeats)
        results["libraries"] = [asdict(r) for r in libs]
        report += ["### Libraries at matched settings", "", library_table(libs), ""]

    if not args.skip_tuning:
        common = dict(seed=args.seed, trials=args.trials, threads=args.threads)
        unpruned = run_study(parts, data, levels, pruned=False, workdir=args.workdir, **common)
        pruned = run_study(parts, data, levels, pruned=True, workdir=args.workdir, **common)
        overhead = dataset_overhead(parts, data, levels)
        summary = tuning_summary(pruned, unpruned)
        replays = {
            name: replay(unpruned, pct, startup, warmup, overhead)
            for name, (pct, startup, warmup) in REPLAYS.items()
        }
        results["tuning"] = {
            "summary": summary,
            "dataset_overhead_s": overhead,
            "replays": replays,
            "unpruned": asdict(unpruned),
            "pruned": asdict(pruned),
        }
        report += [
            f"### Tuning: pruning vs none ({args.trials} trials, seed {args.seed})",
            "",
            tuning_tables(pruned, unpruned, summary, replays),
            "",
            f"Per-trial Dataset construction (train + validation): {overhead:.1f} s.",
            "",
        ]

    if not args.skip_e2e:
        seconds, cpu, out = end_to_end(
            features, labels, args.trials, args.seed, args.threads, args.workdir
        )
        model = out["holdout_metrics"]["model"]
        results["e2e"] = {"seconds": seconds, "cpu_seconds": cpu, "summary": out}
        report += [
            f"### End to end: `spotcheck train --trials {args.trials}`",
            "",
            "| wall s | CPU s | target | test PR-AUC | test ROC-AUC | ECE | calibration |",
            "|---:|---:|---:|---:|---:|---:|---|",
            f"| {seconds:.0f} | {cpu:.0f} | < 600 | {model['pr_auc']:.4f} | {model['roc_auc']:.4f} "
            f"| {model['ece']:.4f} | {out['calibration']} |",
            "",
        ]

    results["loadavg_end"] = os.getloadavg()
    report.append(
        f"Load average (1/5/15 min) at start {', '.join(f'{x:.1f}' for x in load_start)}, "
        f"at end {', '.join(f'{x:.1f}' for x in results['loadavg_end'])}."
    )
    suffix = f"-{features.stem}" if drop else ""
    path = args.workdir / f"results-{args.stores}-s{args.seed}{suffix}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    log(f"wrote {path}")
    print("\n".join(report))


if __name__ == "__main__":
    main()
