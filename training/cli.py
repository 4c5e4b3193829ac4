"""typer commands of the training package: ``train``, ``score`` and ``promote``.

Thin wrappers: parse options, call ``training.train`` / ``serving.batch`` /
``training.registry``, print. Expected failures print ``error: ...`` and exit 1;
``promote`` exits 3 when the gates reject the challenger. Heavy modules are imported inside
the commands so that ``spotcheck --help`` stays instant.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from features.cli import FeaturesOpt, HistoriesOpt, LinksOpt, fail

if TYPE_CHECKING:
    from training.train import TrainResult

app = typer.Typer(no_args_is_help=True, add_completion=False)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input or environment, shown without a traceback."""
    from mlflow.exceptions import MlflowException

    from features import FeaturesError
    from training import TrainingError

    return (FeaturesError, TrainingError, MlflowException)


def _quiet_mlflow() -> None:
    """Batch use: no per-file download progress bars from MLflow (a user's setting wins)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send whatever is written to stdout meanwhile to stderr, so ``--json`` is pure JSON.

    MLflow writes "View run ... at: http://..." to stdout when tracking on a server, and
    native libraries may write to file descriptor 1 directly: both Python's ``sys.stdout``
    and descriptor 1 point at stderr until the block ends.
    """
    sys.stdout.flush()
    saved_stream, saved_fd = sys.stdout, os.dup(1)
    try:
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        yield
    finally:
        sys.stderr.flush()
        sys.stdout = saved_stream
        os.dup2(saved_fd, 1)
        os.close(saved_fd)


def _one_input(histories: Path | None, features: Path | None) -> None:
    if (histories is None) == (features is None):
        raise typer.BadParameter("give exactly one of --histories DIR or --features FILE")


def _print_metrics(metrics: dict[str, dict[str, float]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    names = list(metrics)
    table = Table(title=title)
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    first = ("rows", "positives", "roc_auc", "pr_auc", "brier", "ece", "mean_score", "true_rate")
    keys = [k for k in first if k in metrics["model"]]
    keys += [k for k in metrics["model"] if k.startswith(("precision_at", "recall_at"))]
    for key in keys:
        cells = [metrics[n].get(key) for n in names]
        form = "{:,.0f}" if key in ("rows", "positives") else "{:.4f}"
        table.add_row(key, *("–" if c is None or c != c else form.format(c) for c in cells))
    Console(stderr=True).print(table)


def _print_summary(result: TrainResult) -> None:
    from rich.console import Console

    split = result.split
    _print_metrics(
        result.metrics,
        f"holdout: the {split['test_rows']:,} most recent labels "
        f"({split['test_positives']} positive), scored by the model fit without them",
    )
    if result.truth_metrics:
        rows = int(result.truth_metrics["model"]["rows"])
        _print_metrics(
            result.truth_metrics,
            f"truth: all {rows:,} stores not labelled before the test period",
        )
    recipe = result.recipe
    Console(stderr=True).print(
        f"features: {recipe['features']}\n"
        f"tuning: {recipe['tuning']}\n"
        f"registered model: refit on all {recipe['fit_rows']:,} labels "
        f"({recipe['fit_positives']} positive), {recipe['rounds']} rounds chosen by "
        f"{recipe['folds']['cv_folds']}-fold {recipe['folds']['cv_method']} cross-validation "
        f"(mean PR-AUC {recipe['cv_pr_auc']:.4f}), calibrated ({result.calibration}) on "
        f"{recipe['calibration_rows']:,} out-of-fold scores",
        highlight=False,
    )


@app.command()
def train(
    histories: HistoriesOpt = None,
    features: FeaturesOpt = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labels for --features: store_id, is_counterfeit (0/1)[, labeled_at].",
            show_default=False,
        ),
    ] = None,
    links: LinksOpt = None,
    price_column: Annotated[
        str | None,
        typer.Option(
            help="Feature for the price-rule baseline (lower = riskier); "
            "default price_to_reference_median if present.",
            show_default=False,
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Synthetic data only: truth.parquet of `spotcheck synth`, to report the model "
            "against the truth of every store not labelled before the test period "
            "(evaluation only: never used for fitting, tuning, calibration or gates).",
            show_default=False,
        ),
    ] = None,
    trials: Annotated[
        int,
        typer.Option(
            min=0,
            help="Optuna trials, each scored by cross-validation over the development labels "
            "(0: no tuning, default parameters).",
        ),
    ] = 0,
    timeout: Annotated[
        float | None,
        typer.Option(min=1, help="Stop starting trials after SECONDS.", show_default=False),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (default: spotcheck).")
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(help="Registered model name (default: counterfeit-store-classifier)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the split, Optuna and LightGBM.")] = 0,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL shared by workers (default: sqlite:///optuna.db)."),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option(help="Optuna study to create or resume (default: a new one per run)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Resume the study of this experiment and data (named from both) instead of "
            "starting a new one; the model then depends on earlier runs' trials.",
        ),
    ] = False,
    budget: Annotated[
        int, typer.Option(min=1, help="Absolute spot-check budget for precision/recall.")
    ] = 50,
    n_jobs: Annotated[
        int, typer.Option(min=1, help="Parallel trials (results then depend on timing).")
    ] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a machine-readable summary.")
    ] = False,
) -> None:
    """Tune, train, calibrate and register a model as @challenger; print its models:/ URI."""
    _one_input(histories, features)
    if features is not None and labels is None:
        raise typer.BadParameter("--features needs --labels FILE")
    if histories is not None and (labels is not None or links is not None):
        raise typer.BadParameter("--labels/--links go with --features; histories carry their own")
    _quiet_mlflow()
    from training.train import TrainRequest
    from training.train import train as run_training

    request = TrainRequest(
        histories=histories,
        features=features,
        labels=labels,
        links=links,
        truth=truth,
        price_column=price_column,
        trials=trials,
        timeout=timeout,
        experiment=experiment,
        model_name=model_name,
        seed=seed,
        storage=storage,
        study_name=study_name,
        resume=resume,
        budget=budget,
        n_jobs=n_jobs,
    )
    try:
        # stdout carries the result only (the JSON, or the model's URI).
        with _stdout_to_stderr():
            result = run_training(request)
    except _expected_errors() as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1, default=str))
        return
    _print_summary(result)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(result.model_uri)


@app.command()
def promote(
    model_name: Annotated[
        str | None,
        typer.Option(help="Registered model name (default: counterfeit-store-classifier)."),
    ] = None,
) -> None:
    """Compare @challenger with @champion; exit 0 if promoted, 3 if rejected, 1 on error."""
    _quiet_mlflow()
    from features.tracking import connect
    from training import registry
    from training.settings import EXIT_REJECTED, load_settings

    settings = load_settings()
    name = model_name or settings.model_name
    try:
        client = connect(settings.tracking_uri)
        gates = registry.Gates(
            settings.ece_threshold, settings.pr_auc_margin, settings.bootstrap_samples
        )
        decision = registry.promote(client, name, gates)
    except _expected_errors() as exc:
        raise fail(str(exc)) from exc
    verdict = "promoted" if decision.promoted else "rejected"
    typer.echo(f"{name} v{decision.challenger_version}: {verdict} ({decision.reason})")
    if not decision.promoted:
        raise typer.Exit(EXIT_REJECTED)
