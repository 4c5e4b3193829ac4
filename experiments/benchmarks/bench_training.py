"""Benchmark training: libraries at matched settings, Optuna with and without pruning, end to end.

1. Data: a synthetic marketplace (``features.synth.generate_marketplace``) in which, for this
   benchmark only, EVERY store is labelled with its ground truth (``truth.parquet``) at a
   seeded random time in its life, with its feature row built as of that time by
   ``features.build.build_training_table`` (the production path, over a copy of the
   histories whose labels table holds these labels). Young stores have little history, so
   the task does not saturate; the labels carry ``labeled_at``, so training uses its
   time-aware split. Features the generator makes near-perfect separators
   (``SYNTHETIC_GIVEAWAYS``) are left out unless ``--drop-features ''``. Cached in the work
   directory; ``--features/--labels`` reuse any pair.
2. Libraries: LightGBM (the project's ``fit_booster``), XGBoost ``hist`` and scikit-learn
   ``HistGradientBoostingClassifier`` on the same split and settings (``training_libs``).
3. Tuning: ``training.tune.tune`` twice per seed with the same trial count, without pruning
   (``TuneConfig(pruning=False)``) and with the shipped pruner. Per trial: end time, rounds
   and best-so-far validation PR-AUC; headline: time for the pruned run to come within a
   tolerance of the unpruned best, against the unpruned run's total time and its time to
   its own best.
4. End to end: ``spotcheck train --features F --labels L --trials N`` in a subprocess with
   fresh SQLite MLflow and Optuna stores and ``SPOTCHECK_NUM_THREADS`` = ``--threads``.
5. Optional (``--explore N``): N random configurations from the search space widened to
   learning rates 0.01-0.3 and 2,000 rounds, with full learning curves: quality and time by
   learning rate, and pruners replayed on the curves over many random trial orders (the
   evidence behind the shipped search space and pruner).

Usage (heavy runs must hold the shared lock):

    flock /tmp/spotcheck-heavy.lock uv run --frozen python -m \\
        experiments.benchmarks.bench_training --stores 200000 --seed 11 --trials 30 \\
        --workdir /work/scratch/benchtrain

Prints Markdown tables and writes everything (with per-trial traces) to
``<workdir>/results-<stores>-s<seed>.json``.
"""

from __future__ import annotations

import argparse
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

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from mlflow.tracking import MlflowClient
from sklearn.metrics import average_precision_score

from experiments.benchmarks.training_libs import (
    LibraryResult,
    Matrices,
    Stopwatch,
    binned_datasets,
    compare,
)
from features.scoring.encoding import category_levels, encode_features
from training import tune
from training.crossfit import label_times, make_folds
from training.dataset import LABEL, TrainingData, load_own_data, split
from training.model import EARLY_STOPPING_ROUNDS, MAX_ROUNDS, fixed_params
from training.settings import load_settings

# The issue's tolerance first, then tighter ones.
TOLERANCES = (0.005, 0.001, 0.0005)
# Features the synthetic generator makes near-perfect separators (counterfeit listings carry
# ~12x the stock and orders ~3 extra delivery days, with no honest look-alikes), so any
# model ranks well on them alone; real marketplaces do not hand these over.
SYNTHETIC_GIVEAWAYS = (
    "total_stock",
    "mean_log_stock_per_listing",
    "delivery_days_mean",
    "slow_delivery_share",
    "undelivered_share_30d",
)


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


# A benchmark label falls at least this long after the store opened (a label at the opening
# instant would describe a store with no history and is rejected by the feature builder).
LABEL_LEAD = pd.Timedelta(days=1)


def benchmark_labels(histories: Path, seed: int) -> pd.DataFrame:
    """Label every store with its ground truth at a seeded random time in its active life.

    The time is uniform between one day after ``opened_at`` and the store's last event (a
    banned or closed store stops trading), so young stores with little history are as
    common as in a live queue and the task does not saturate. Benchmark only: production
    labels cover a few percent of stores and come from test buys.

    Returns:
        ``store_id``, ``labeled_at`` (naive UTC), ``is_counterfeit``, ``source`` (``test_buy``),
        sorted by ``store_id``.
    """
    from features.contract.histories import open_histories
    from features.contract.tables import EVENT_TIME_COLUMNS

    con = open_histories(histories, tables=("stores", *EVENT_TIME_COLUMNS))
    events = " UNION ALL ".join(
        f"SELECT store_id, {column} AS t FROM {table}"
        for table, column in EVENT_TIME_COLUMNS.items()
    )
    life = con.execute(
        f"SELECT s.store_id, s.opened_at, max(e.t) AS last_event FROM stores s "
        f"LEFT JOIN ({events}) e USING (store_id) GROUP BY ALL ORDER BY s.store_id"
    ).df()
    first = life["opened_at"] + LABEL_LEAD
    last = life["last_event"].fillna(first).where(life["last_event"] > first, first)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    offset = rng.random(len(life)) * (last - first).dt.total_seconds().to_numpy()
    labeled_at = first + pd.to_timedelta(np.floor(offset), unit="s")
    truth = pd.read_parquet(histories / "truth.parquet", columns=["store_id", LABEL])
    labels = pd.DataFrame({"store_id": life["store_id"], "labeled_at": labeled_at})
    labels = labels.merge(truth, on="store_id", how="left", validate="one_to_one")
    if labels[LABEL].isna().any():
        raise RuntimeError(f"{histories}/truth.parquet lacks some stores")
    labels[LABEL] = labels[LABEL].astype("int64")
    labels["source"] = "test_buy"
    return labels


def _histories_with_labels(histories: Path, labels: pd.DataFrame, out: Path) -> Path:
    """A histories directory that links every table of ``histories`` but its labels."""
    from features.contract.tables import CONTRACT

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for table in CONTRACT:
        if table != "labels":
            (out / f"{table}.parquet").symlink_to((histories / f"{table}.parquet").resolve())
    _write_parquet(labels, out / "labels.parquet")
    return out


def prepare_table(workdir: Path, stores: int, seed: int) -> tuple[Path, Path]:
    """Synthesize the marketplace and write point-in-time features + benchmark labels (cached).

    Every store gets one label (``benchmark_labels``) and one feature row as of that
    label's time, built by ``features.build.build_training_table`` (the production path)
    over a copy of the histories whose labels table holds the benchmark labels; link
    features therefore count other stores' benchmark labels known before each row's time.

    Returns:
        Paths of ``features.parquet`` (``store_id`` + features) and ``labels.parquet``
        (``store_id``, ``is_counterfeit``, ``labeled_at``).
    """
    from features.build import build_training_table
    from features.synth.generate import generate_marketplace

    table_dir = workdir / f"timed-{stores}-s{seed}"
    features_path, labels_path = table_dir / "features.parquet", table_dir / "labels.parquet"
    made_by = table_dir / "features_code.txt"
    if features_path.is_file() and labels_path.is_file():
        log(f"reusing cached table {table_dir}")
        if made_by.is_file() and made_by.read_text() != code_digest("features"):
            log("note: features/ changed since the cached table was built; delete it to rebuild")
        return features_path, labels_path
    histories = workdir / f"m{stores}-s{seed}"
    if not (histories / "synth.json").is_file():
        log(f"synthesizing {stores} stores (seed {seed}) into {histories}")
        started = time.perf_counter()
        generate_marketplace(histories, stores, seed, force=True)
        log(f"synth took {time.perf_counter() - started:.0f} s")
    labels = benchmark_labels(histories, seed)
    relabelled = _histories_with_labels(histories, labels, table_dir / "histories")
    log(f"building {len(labels)} feature rows as of each label's time")
    started = time.perf_counter()
    # The synthetic histories obey the contract by construction; validation adds minutes.
    table, spec = build_training_table(relabelled, validate=False)
    log(
        f"features: {table.shape[0]} rows x {len(spec)} features in "
        f"{time.perf_counter() - started:.0f} s"
    )
    keys = table[["store_id", "as_of"]].rename(columns={"as_of": "labeled_at"})
    merged = keys.merge(labels, on=["store_id", "labeled_at"], validate="one_to_one")
    if len(merged) != len(labels):
        raise RuntimeError(f"{len(labels) - len(merged)} benchmark labels got no feature row")
    _write_parquet(merged[["store_id", LABEL, "labeled_at"]], labels_path)
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


@dataclass(frozen=True)
class Parts:
    """Train / validation / test for the library comparison and the learning curves.

    The project cross-validates over its development rows; to compare libraries on one fit,
    the development rows are cut once more by time: the latest quarter validates.
    """

    development: pd.DataFrame
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def describe(self) -> dict[str, object]:
        return {"split_method": "time"} | {
            f"{name}_{what}": value
            for name, part in (("train", self.train), ("validation", self.validation),
                               ("test", self.test))
            for what, value in (("rows", len(part)), ("positives", int(part[LABEL].sum())))
        }  # fmt: skip


def bench_parts(data: TrainingData, seed: int) -> Parts:
    """The project's split, with its development rows cut once more for one-fit benchmarks."""
    parts = split(data, seed, load_settings())
    development = parts.development
    times = development["as_of"]
    cut = times.iloc[int(len(development) * 0.75)]
    return Parts(
        development,
        development[times < cut].reset_index(drop=True),
        development[times >= cut].reset_index(drop=True),
        parts.test,
    )


def matrices(parts: Parts, data: TrainingData, levels: dict[str, list[str]]) -> Matrices:
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
    rounds: int
    finished_s: float
    duration_s: float
    rounds_so_far: int
    best_so_far: float | None


@dataclass(frozen=True)
class StudyTrace:
    """A whole tuning run."""

    label: str
    seed: int
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

    def trial_reaching(self, level: float) -> int | None:
        """Number of the trial whose completion first brought the best-so-far to ``level``."""
        first = self._first_reaching(level)
        return None if first is None else first.number

    def _first_reaching(self, level: float) -> TrialRecord | None:
        for t in self.trials:
            if t.best_so_far is not None and t.best_so_far >= level - 1e-12:
                return t
        return None

    def count(self, state: str) -> int:
        """Number of trials in a state (``COMPLETE``, ``PRUNED``, ``FAIL``)."""
        return sum(t.state == state for t in self.trials)


def run_study(
    parts: Parts,
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
    label = "pruned" if pruned else "unpruned"
    where = workdir / f"tune-{label}-s{seed}"
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
        pruning=pruned,
    )
    log(f"tuning {label}, seed {seed}: {trials} trials, {threads} threads")
    started_wall = datetime.now()  # Optuna stamps trials with naive local datetime.now()
    with Stopwatch() as clock:
        development = parts.development
        folds = make_folds(development[LABEL].to_numpy(), label_times(development), seed)
        tune.tune(development, folds, data.spec, levels, config, client, experiment_id, parent)
    client.set_terminated(parent)
    study = optuna.load_study(study_name="bench", storage=storage)
    return StudyTrace(label, seed, clock.wall, clock.cpu, _records(study, started_wall))


def _records(study: optuna.Study, started: datetime) -> list[TrialRecord]:
    records, best, rounds = [], None, 0
    done = [t for t in study.trials if t.datetime_complete is not None]
    for t in sorted(done, key=lambda t: t.datetime_complete):
        if t.state == optuna.trial.TrialState.COMPLETE:
            best = t.value if best is None else max(best, t.value)
        trial_rounds = int(t.user_attrs.get("rounds", 0))
        rounds += trial_rounds
        records.append(
            TrialRecord(
                number=t.number,
                state=t.state.name,
                value=t.value,
                rounds=trial_rounds,
                finished_s=(t.datetime_complete - started).total_seconds(),
                duration_s=t.duration.total_seconds(),
                rounds_so_far=rounds,
                best_so_far=best,
            )
        )
    return records


def binning_seconds(parts: Parts, data: TrainingData, levels: dict, seed: int, threads: int):
    """Seconds to bin the train + validation Datasets: what every trial used to pay."""
    started = time.perf_counter()
    binned_datasets(parts.train, parts.validation, data.spec, levels, fixed_params(seed, threads))
    return time.perf_counter() - started


# --------------------------------------------------------------------------- exploration

EXPLORE_MAX_ROUNDS = 2000
LEARNING_RATE_BANDS = (
    (0.01, 0.02),
    (0.02, 0.03),
    (0.03, 0.05),
    (0.05, 0.1),
    (0.1, 0.2),
    (0.2, 0.3),
)
# Pruners replayed on the explored curves: name -> (percentile kept, startup trials, warmup
# steps, rounds per step (None: progress steps as ``tune`` reports them), whether pruned
# trials stay in the reference as in ``tune.ProgressPruner`` (Optuna's own pruners drop them)).
PRUNERS = {
    "none": None,
    "previous: Optuna median, 5 startup, warmup 30 rounds, steps of 10 rounds": (
        50.0,
        5,
        30,
        10,
        False,
    ),
    "Optuna median, 3 startup, warmup 10 progress steps": (50.0, 3, 10, None, False),
    "Optuna keep 75%, 3 startup, warmup 10 progress steps": (75.0, 3, 10, None, False),
    "keep 50%, 3 startup, warmup 10 progress steps": (50.0, 3, 10, None, True),
    "keep 75%, 3 startup, warmup 5 progress steps": (75.0, 3, 5, None, True),
    "keep 75%, 5 startup, warmup 20 progress steps": (75.0, 5, 20, None, True),
    "shipped: keep 75%, 3 startup, warmup 10 progress steps": (
        tune.PRUNE_KEEP_PERCENTILE,
        tune.PRUNE_STARTUP_TRIALS,
        tune.PRUNE_WARMUP_STEPS,
        None,
        True,
    ),
}


@dataclass(frozen=True)
class Curve:
    """One explored configuration: validation PR-AUC and elapsed seconds after each round."""

    params: dict
    values: list[float]
    seconds: list[float]

    @property
    def best(self) -> float:
        """Best validation PR-AUC."""
        return max(self.values)

    def capped(self, rounds: int) -> Curve:
        """The curve as a run capped at ``rounds`` rounds with the same early stopping."""
        values = self.values[:rounds]
        best = 0
        for i, v in enumerate(values):
            if v > values[best]:
                best = i
            if i - best >= EARLY_STOPPING_ROUNDS:
                values = values[: i + 1]
                break
        return Curve(self.params, values, self.seconds[: len(values)])


def explore(
    parts: Parts, data: TrainingData, levels: dict, seed: int, threads: int, n: int
) -> list[Curve]:
    """Fit ``n`` random configurations (learning rate 0.01-0.3) recording every round."""
    fixed = fixed_params(seed, threads)
    train, validation = binned_datasets(parts.train, parts.validation, data.spec, levels, fixed)
    positives = int(parts.train[LABEL].sum())
    ratio = (len(parts.train) - positives) / positives
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed)
    )
    curves = []
    for i in range(n):
        trial = study.ask()
        params = tune.search_space(trial, ratio)
        # Same space, learning rate widened: re-draw it from 0.01-0.3.
        params["learning_rate"] = trial.suggest_float("wide_learning_rate", 0.01, 0.3, log=True)
        curve = _fit_curve({**fixed, **params}, train, validation)
        study.tell(trial, curve.best)
        curves.append(Curve(params, curve.values, curve.seconds))
        log(
            f"explore {i + 1}/{n}: lr {params['learning_rate']:.3f}, best {curve.best:.4f} at "
            f"round {int(np.argmax(curve.values)) + 1}, {curve.seconds[-1]:.1f} s"
        )
    return curves


def _fit_curve(params: dict, train: lgb.Dataset, validation: lgb.Dataset) -> Curve:
    """Boost with early stopping, recording validation PR-AUC and time after every round."""
    values, seconds = [], []
    started = time.perf_counter()

    def record(env: lgb.callback.CallbackEnv) -> None:
        values.append(env.evaluation_result_list[0][2])
        seconds.append(time.perf_counter() - started)

    lgb.train(
        params,
        train,
        EXPLORE_MAX_ROUNDS,
        valid_sets=[validation],
        callbacks=[record, lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    return Curve(params, values, seconds)


def _report_steps(curve: Curve, rounds_per_step: int | None) -> list[tuple[int, int]]:
    """(step, round index) pairs at which a study would report this curve."""
    if rounds_per_step is not None:
        return [(i, i) for i in range(0, len(curve.values), rounds_per_step)]
    rate, out = curve.params["learning_rate"], []
    for i in range(len(curve.values)):
        step = tune.progress_step(i + 1, rate)
        if not out or step != out[-1][0]:
            out.append((step, i))
    return out


def _cut(curve: Curve, pruner: tuple, reference: list[dict[int, float]], completed: int):
    """Round index at which ``pruner`` stops ``curve`` (None: it completes) and its steps."""
    keep, startup, warmup, rounds_per_step, _ = pruner
    steps = _report_steps(curve, rounds_per_step)
    if completed < startup:
        return None, steps
    running = -np.inf
    for step, i in steps:
        running = max(running, curve.values[i])
        others = [r[step] for r in reference if step in r]
        if (
            step >= warmup
            and len(others) >= tune.PRUNE_MIN_TRIALS
            and running < np.percentile(others, 100.0 - keep)
        ):
            return i, steps
    return None, steps


def _simulate(curves: list[Curve], pruner: tuple | None) -> list[tuple[float, float | None]]:
    """(seconds so far, best so far) after each trial of a replayed study."""
    reference: list[dict[int, float]] = []
    clock, best, completed, out = 0.0, None, 0, []
    for curve in curves:
        cut, steps = (None, []) if pruner is None else _cut(curve, pruner, reference, completed)
        if cut is None:
            clock += curve.seconds[-1]
            best = curve.best if best is None else max(best, curve.best)
            completed += 1
            reference.append({step: curve.values[i] for step, i in steps})
        else:
            clock += curve.seconds[cut]
            if pruner[4]:  # pruned trials stay in the reference up to where they stopped
                reference.append({step: curve.values[i] for step, i in steps if i <= cut})
        out.append((clock, best))
    return out


def replay_pruners(curves: list[Curve], trials: int, orders: int, seed: int) -> dict[str, dict]:
    """Replay each of ``PRUNERS`` on ``orders`` random ``trials``-trial studies.

    Only configurations inside the shipped search space (learning rate >= 0.03), capped at
    ``MAX_ROUNDS``. The proposals are fixed (a real TPE study would propose differently
    after a prune), so this compares the pruners on equal footing, not absolute times.

    Returns:
        Per pruner: medians over the orders of the time share of the unpruned study, the
        best lost to pruning (median and 90th percentile), and the time to come within 0.005
        and 0.001 of the unpruned best as a share of the unpruned total time.
    """
    pool = [c.capped(MAX_ROUNDS) for c in curves if c.params["learning_rate"] >= 0.03]
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(len(pool))[: min(trials, len(pool))] for _ in range(orders)]
    out = {}
    for name, pruner in PRUNERS.items():
        rows = []
        for pick in picks:
            study = [pool[i] for i in pick]
            base, run = _simulate(study, None), _simulate(study, pruner)
            total, best = base[-1]
            row = {"time_share": run[-1][0] / total, "lost": best - run[-1][1]}
            for tol in TOLERANCES[:2]:
                reach = next((t for t, b in run if b is not None and b >= best - tol), np.inf)
                row[f"reach_{tol}"] = reach / total
            rows.append(row)
        out[name] = {
            "time_share": float(np.median([r["time_share"] for r in rows])),
            "lost_median": float(np.median([r["lost"] for r in rows])),
            "lost_p90": float(np.quantile([r["lost"] for r in rows], 0.9)),
            **{
                f"reach_{tol}": float(np.median([r[f"reach_{tol}"] for r in rows]))
                for tol in TOLERANCES[:2]
            },
        }
    out["_meta"] = {"pool": len(pool), "trials": min(trials, len(pool)), "orders": orders}
    return out


def exploration_tables(curves: list[Curve], replays: dict[str, dict]) -> str:
    """Markdown: quality and time by learning-rate band, then the pruner replays."""
    out = [
        "| learning rate | configs | best val PR-AUC | median val PR-AUC | median s | "
        "median best round | max best round |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lo, hi in LEARNING_RATE_BANDS:
        band = [c for c in curves if lo <= c.params["learning_rate"] < hi]
        if not band:
            continue
        rounds = [int(np.argmax(c.values)) + 1 for c in band]
        out.append(
            f"| {lo}-{hi} | {len(band)} | {max(c.best for c in band):.4f} "
            f"| {np.median([c.best for c in band]):.4f} "
            f"| {np.median([c.seconds[-1] for c in band]):.1f} "
            f"| {np.median(rounds):.0f} | {max(rounds)} |"
        )
    meta = replays["_meta"]
    out += [
        "",
        f"Pruners replayed on the {meta['pool']} curves with learning rate ≥ 0.03 (capped at "
        f"{MAX_ROUNDS} rounds), {meta['orders']} random studies of {meta['trials']} trials "
        "each; medians over the studies, times as a share of the unpruned study's total:",
        "",
        "| pruner | time | best lost (median / p90) | within 0.005 of best | within 0.001 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in replays.items():
        if name.startswith("_"):
            continue
        out.append(
            f"| {name} | {r['time_share']:.2f} | {r['lost_median']:.4f} / {r['lost_p90']:.4f} "
            f"| {_fmt(r['reach_0.005'], '.2f')} | {_fmt(r['reach_0.001'], '.2f')} |"
        )
    return "\n".join(out)


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
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return format(value, spec)


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


def giveaway_table(data: TrainingData, parts: Parts, dropped: list[str], features: Path) -> str:
    """Markdown: test PR-AUC of each left-out feature alone (best of both directions)."""
    if not dropped:
        return ""
    full = pd.read_parquet(features, columns=["store_id", *dropped])
    test = parts.test[["store_id", LABEL]].merge(full, on="store_id", how="left")
    y = test[LABEL].to_numpy()
    lines = [
        f"Left out (test PR-AUC of the feature alone; base rate {y.mean():.4f}):",
        "",
        "| feature | test PR-AUC alone |",
        "|---|---:|",
    ]
    for name in dropped:
        x = test[name].astype("float64")
        x = x.fillna(x.median()).to_numpy()
        score = max(average_precision_score(y, x), average_precision_score(y, -x))
        lines.append(f"| {name} | {score:.4f} |")
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def tuning_summary(pruned: StudyTrace, unpruned: StudyTrace) -> dict:
    """Headline figures of pruning vs none at the issue's tolerance and tighter ones."""
    reach_best = unpruned.time_to_reach(unpruned.best)
    sweep = []
    for tol in TOLERANCES:
        target = unpruned.best - tol
        reach = pruned.time_to_reach(target)
        sweep.append(
            {
                "tolerance": tol,
                "target": target,
                "unpruned_s": unpruned.time_to_reach(target),
                "unpruned_trial": unpruned.trial_reaching(target),
                "pruned_s": reach,
                "pruned_trial": pruned.trial_reaching(target),
                "ratio_to_unpruned_total": _ratio(reach, unpruned.seconds),
                "ratio_to_unpruned_best": _ratio(reach, reach_best),
                "pruned_rounds": pruned.rounds_to_reach(target),
                "rounds_ratio_to_unpruned_total": _ratio(
                    pruned.rounds_to_reach(target), unpruned.trials[-1].rounds_so_far
                ),
            }
        )
    return {
        "seed": pruned.seed,
        "unpruned_best": unpruned.best,
        "pruned_best": pruned.best,
        "unpruned_time_to_best_s": reach_best,
        "unpruned_total_s": unpruned.seconds,
        "pruned_total_s": pruned.seconds,
        "sweep": sweep,
    }


def tuning_tables(runs: list[tuple[StudyTrace, StudyTrace, dict]]) -> str:
    """Markdown: both runs per seed, then time to within each tolerance of the unpruned best."""
    out = [
        "| seed | run | total s | CPU s | rounds | complete / pruned | best val PR-AUC "
        "| s to its best (trial) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for pruned, unpruned, _ in runs:
        for trace in (unpruned, pruned):
            out.append(
                f"| {trace.seed} | {trace.label} | {trace.seconds:.0f} | {trace.cpu_seconds:.0f} "
                f"| {trace.trials[-1].rounds_so_far} "
                f"| {trace.count('COMPLETE')} / {trace.count('PRUNED')} | {trace.best:.4f} "
                f"| {_fmt(trace.time_to_reach(trace.best), '.0f')} "
                f"({trace.trial_reaching(trace.best)}) |"
            )
    out += [
        "",
        "Time until the pruned run's best-so-far validation PR-AUC is within a tolerance of the "
        "unpruned run's best (trial numbers in brackets; trial 0 is the default "
        "configuration). The issue's target: tolerance 0.005, at most half the time of tuning "
        "without pruning.",
        "",
        "| seed | tolerance | level | unpruned s (trial) | pruned s (trial) "
        "| ÷ unpruned total | ÷ unpruned s to its best | pruned rounds ÷ unpruned total |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, _, s in runs:
        for row in s["sweep"]:
            out.append(
                f"| {s['seed']} | {row['tolerance']} | {row['target']:.4f} "
                f"| {_fmt(row['unpruned_s'], '.0f')} ({_fmt(row['unpruned_trial'], 'd')}) "
                f"| {_fmt(row['pruned_s'], '.0f')} ({_fmt(row['pruned_trial'], 'd')}) "
                f"| {_fmt(row['ratio_to_unpruned_total'], '.2f')} "
                f"| {_fmt(row['ratio_to_unpruned_best'], '.2f')} "
                f"| {_fmt(row['rounds_ratio_to_unpruned_total'], '.2f')} |"
            )
    return "\n".join(out)


def trial_table(pruned: StudyTrace, unpruned: StudyTrace) -> str:
    """Markdown: trial by trial, both runs of one seed side by side."""
    out = [
        "| trial | unpruned value | rounds | end s | best | pruned-run value | rounds | end s "
        "| best |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_number = {t.number: t for t in pruned.trials}
    for u in unpruned.trials:
        p = by_number.get(u.number)
        value = "–"
        if p is not None:
            value = "pruned" if p.state == "PRUNED" else _fmt(p.value, ".4f")
        out.append(
            f"| {u.number} | {_fmt(u.value, '.4f')} | {u.rounds} | {u.finished_s:.0f} "
            f"| {_fmt(u.best_so_far, '.4f')} | {value} | {_fmt(p and p.rounds, 'd')} "
            f"| {_fmt(p and p.finished_s, '.0f')} | {_fmt(p and p.best_so_far, '.4f')} |"
        )
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--tune-seeds", default="", help="comma-separated study seeds (default: --seed)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="fits per library (fastest kept)")
    parser.add_argument("--features", type=Path, help="reuse this feature table")
    parser.add_argument("--labels", type=Path, help="reuse these labels (with --features)")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "spotcheck-bench-training"
    )
    parser.add_argument(
        "--drop-features",
        default=",".join(SYNTHETIC_GIVEAWAYS),
        help="comma-separated features to leave out (default: SYNTHETIC_GIVEAWAYS; '' keeps all)",
    )
    parser.add_argument("--explore", type=int, default=0, help="random configurations to explore")
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
        all_features, labels = args.features, args.labels
    else:
        all_features, labels = prepare_table(args.workdir, args.stores, args.seed)
    drop = [c.strip() for c in args.drop_features.split(",") if c.strip()]
    features = without_features(all_features, drop) if drop else all_features
    data = load_own_data(features, labels)
    parts = bench_parts(data, args.seed)
    levels = category_levels(parts.development, data.spec)
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
        f"({sizes['test_positives']:,}; labels from {sizes.get('test_from', '–')}). "
        f"Threads: {args.threads}.",
        "",
        giveaway_table(data, parts, drop, all_features),
        "",
    ]

    if not args.skip_libs:
        log("library comparison")
        libs = compare(matrices(parts, data, levels), args.seed, args.threads, args.repeats)
        results["libraries"] = [asdict(r) for r in libs]
        report += ["### Libraries at matched settings", "", library_table(libs), ""]

    if not args.skip_tuning:
        seeds = [int(s) for s in args.tune_seeds.split(",") if s.strip()] or [args.seed]
        runs = []
        for seed in seeds:
            common = dict(seed=seed, trials=args.trials, threads=args.threads)
            unpruned = run_study(parts, data, levels, pruned=False, workdir=args.workdir, **common)
            pruned = run_study(parts, data, levels, pruned=True, workdir=args.workdir, **common)
            runs.append((pruned, unpruned, tuning_summary(pruned, unpruned)))
        binning = binning_seconds(parts, data, levels, args.seed, args.threads)
        results["tuning"] = {
            "binning_s": binning,
            "runs": [
                {"summary": s, "unpruned": asdict(u), "pruned": asdict(p)} for p, u, s in runs
            ],
        }
        report += [
            f"### Tuning: pruning vs none ({args.trials} trials per run)",
            "",
            tuning_tables(runs),
            "",
            f"Binning the train + validation Datasets takes {binning:.1f} s, now paid once per "
            "study instead of once per trial.",
            "",
            f"Trial by trial, seed {runs[0][0].seed} (end = seconds from the start of tuning; "
            "best = best-so-far validation PR-AUC):",
            "",
            trial_table(runs[0][0], runs[0][1]),
            "",
        ]

    if not args.skip_e2e:
        seconds, cpu, out = end_to_end(
            features, labels, args.trials, args.seed, args.threads, args.workdir
        )
        metrics = out["holdout_metrics"]
        results["e2e"] = {"seconds": seconds, "cpu_seconds": cpu, "summary": out}
        report += [
            f"### End to end: `spotcheck train --trials {args.trials}`",
            "",
            f"Wall time {seconds:.0f} s (CPU {cpu:.0f} s; target < 600 s); calibration "
            f"{out['calibration']}. Holdout (most recent labels):",
            "",
            "| scorer | test PR-AUC | test ROC-AUC | ECE |",
            "|---|---:|---:|---:|",
            *(
                f"| {who} | {_fmt(m.get('pr_auc'), '.4f')} | {_fmt(m.get('roc_auc'), '.4f')} "
                f"| {_fmt(m.get('ece'), '.4f')} |"
                for who, m in metrics.items()
            ),
            "",
        ]

    if args.explore:
        curves = explore(parts, data, levels, args.seed, args.threads, args.explore)
        replays = replay_pruners(curves, args.trials, orders=300, seed=args.seed)
        results["explore"] = {"curves": [asdict(c) for c in curves], "replays": replays}
        report += [
            f"### Search space and pruner: {args.explore} random configurations",
            "",
            exploration_tables(curves, replays),
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
