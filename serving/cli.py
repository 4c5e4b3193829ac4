"""typer commands of the serving package: ``score`` (the batch spot-check queue).

Exit codes as for every ``spotcheck`` command (``features.cli``): 1 for unusable input, a
model that does not load or an unreachable tracking store, 2 for usage errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from features.cli import FeaturesOpt, HistoriesOpt, LinksOpt, fail

# The defaults of features.scoring.reasons (RISK_REASONS, MITIGATING_REASONS), written out so
# that `spotcheck --help` does not import pandas; a test keeps them equal.
RISK_REASONS = 5
MITIGATING_REASONS = 3

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(no_args_is_help=True, add_completion=False)

ModelOpt = Annotated[
    str,
    typer.Option(
        help="models:/NAME@champion, models:/NAME/3 or runs:/RUN_ID/model.", show_default=False
    ),
]


# The model to serve or package: the registered champion unless a URI is given.
ServedModelOpt = Annotated[
    str | None,
    typer.Option(
        help="Model URI [default: models:/<SPOTCHECK_MODEL_NAME>@champion].", show_default=False
    ),
]


def champion_uri() -> str:
    """``models:/<SPOTCHECK_MODEL_NAME>@champion``, the name read now."""
    from features.tracking import model_name

    return f"models:/{model_name()}@champion"


def _check_sources(
    histories: Path | None, features: Path | None, links: Path | None, labels: Path | None
) -> None:
    """Exactly one feature source; links and labels only with a team's own feature file."""
    if (histories is None) == (features is None):
        raise typer.BadParameter("give exactly one of --histories DIR or --features FILE")
    if histories is not None and (labels is not None or links is not None):
        raise typer.BadParameter("--labels/--links go with --features; histories carry their own")


def _print_queue_head(scored: pd.DataFrame, top: int, order: str = "rank") -> None:
    """Print the head of the spot-check queue: its order, store, score and top reason."""
    if top <= 0:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"spot-check queue: riskiest {min(top, len(scored))} stores")
    for column in (order, "store_id", "score", "top reason"):
        table.add_column(column, justify="right" if column in (order, "score") else "left")
    for row in scored.head(top).itertuples(index=False):
        table.add_row(
            str(getattr(row, order)), str(row.store_id), f"{row.score:.3f}", str(row.reason_1)
        )
    Console().print(table)


@app.command()
def score(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).", show_default=False)],
    histories: HistoriesOpt = None,
    features: FeaturesOpt = None,
    links: LinksOpt = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Known labels counted by link features (with --features).", show_default=False
        ),
    ] = None,
    top: Annotated[
        int, typer.Option(min=0, help="Print the riskiest N stores of the queue (0: none).")
    ] = 10,
    reasons: Annotated[
        int, typer.Option(min=0, help="Risk-raising reasons per store at most.")
    ] = RISK_REASONS,
    mitigating: Annotated[
        int, typer.Option(min=0, help="Mitigating (risk-lowering) reasons per store at most.")
    ] = MITIGATING_REASONS,
    engine: Annotated[
        str,
        typer.Option(
            help="local (in this process) or spark: --features is then a complete Parquet "
            "feature table (file or directory) and --out a Parquet directory."
        ),
    ] = "local",
    spark_master: Annotated[
        str | None,
        typer.Option(
            help="Spark master with --engine spark [default: $SPOTCHECK_SPARK_MASTER or "
            "local[N], N the cores available].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score every store: score, rank, base value and its reasons both ways.

    Every score comes with its explanation in log-odds (base_value + contributions =
    raw_score): the top risk-raising reasons, the top mitigating ones, and the contribution
    of each feature group. Each reason names the feature, the store's value, what is normal
    among genuine stores and the store's percentile among them.
    """
    _check_sources(histories, features, links, labels)
    if engine not in ("local", "spark"):
        raise typer.BadParameter(f"{engine!r}: use local or spark", param_hint="--engine")
    if engine == "spark":
        if features is None or links is not None or labels is not None:
            raise typer.BadParameter(
                "--engine spark scores a complete feature table: give --features only "
                "(no --histories, --links or --labels)"
            )
        _score_on_spark(model, features, out, spark_master, reasons, mitigating, top)
        return
    if spark_master is not None:
        raise typer.BadParameter("goes with --engine spark", param_hint="--spark-master")
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter(f"{str(out)!r}: use a .parquet or .csv file", param_hint="--out")
    # Batch use: no per-file download progress bars from MLflow (a user's setting wins).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.exceptions import MlflowException

    from features import FeaturesError
    from features.byo import scoring_table
    from features.io import write_table
    from features.tracking import connect
    from serving import ServingError, batch

    try:
        connect()
        loaded = batch.load_model(model)
        if histories is not None:
            table, spec = batch.features_from_histories(histories)
            batch.check_model_spec(loaded, spec)
        else:
            table = scoring_table(features, links, labels)
        scored = batch.score_stores(loaded, table, reasons, mitigating)
        path = write_table(scored, out)
    except (FeaturesError, ServingError, MlflowException) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"scored {len(scored)} stores with {model} -> {path}", err=True)
    _print_queue_head(scored, top)


def _score_on_spark(
    model: str,
    features: Path,
    out: Path,
    master: str | None,
    reasons: int,
    mitigating: int,
    top: int,
) -> None:
    """``spotcheck score --engine spark``: ``serving.spark_scoring`` in a session of its own."""
    if out.suffix.lower() == ".csv":
        raise typer.BadParameter(
            f"{str(out)!r}: Spark writes a Parquet directory, not CSV", param_hint="--out"
        )
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import time

    from mlflow.exceptions import MlflowException

    from features import FeaturesError
    from features.spark_session import spark_session
    from features.tracking import connect
    from serving import ServingError, batch, spark_scoring

    try:
        connect()
        loaded = batch.load_model(model)
        started = time.perf_counter()
        spark = spark_session(master)
        spark.sparkContext.setLogLevel("ERROR")
        ready = time.perf_counter()
        try:
            result = spark_scoring.score_table_on_spark(
                spark, loaded, model, features, out, reasons, mitigating, top
            )
            done = time.perf_counter()
        finally:
            spark.stop()
    except (FeaturesError, ServingError, MlflowException) as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"scored {result.rows} stores with {model} on Spark -> {result.path} "
        f"(session {ready - started:.1f} s, scoring {done - ready:.1f} s)",
        err=True,
    )
    _print_queue_head(result.head, top)


@app.command()
def queue(
    model: ModelOpt,
    budget: Annotated[int, typer.Option(min=1, help="Stores to test-buy.", show_default=False)],
    out: Annotated[Path, typer.Option(help="Output directory.", show_default=False)],
    histories: HistoriesOpt = None,
    features: FeaturesOpt = None,
    links: LinksOpt = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Known labels (with --features): left out of the queue, counted by links.",
            show_default=False,
        ),
    ] = None,
    per_ring: Annotated[
        int, typer.Option(min=1, help="Model picks per ring (stores sharing devices) at most.")
    ] = 1,
    explore: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of the budget drawn at random (probabilities recorded).",
        ),
    ] = 0.0,
    explore_design: Annotated[
        str,
        typer.Option(
            help="stratified: half from the model's budget edge, half weighted by score; "
            "uniform: all uniformly from the stores the model did not pick.",
        ),
    ] = "stratified",
    seed: Annotated[int, typer.Option(help="Seed of the random draw.")] = 0,
    max_ring_size: Annotated[
        int, typer.Option(min=2, help="Larger groups of linked stores are not rings.")
    ] = 30,
    table_format: Annotated[
        str, typer.Option("--format", help="Table format: parquet or csv.")
    ] = "parquet",
    top: Annotated[int, typer.Option(min=0, help="Print the first N picks (0: none).")] = 10,
    reports: Annotated[
        int,
        typer.Option(
            min=0,
            help="Also write case reports of the first N picks into OUT/reports/ "
            "(with --histories).",
        ),
    ] = 0,
) -> None:
    """Write the stores to test-buy next: queue table, rings and an HTML page.

    Labelled stores are left out; at most --per-ring model picks come from one ring (stores
    joined through the devices, Wi-Fi or IPs they share now); --explore spends that share of
    the budget on random picks among the other unlabelled stores, each with its inclusion
    probability, so the model can later be evaluated without bias (--explore-design).
    """
    _check_sources(histories, features, links, labels)
    if table_format not in ("parquet", "csv"):
        raise typer.BadParameter(f"{table_format!r}: use parquet or csv", param_hint="--format")
    if reports and histories is None:
        raise typer.BadParameter("case reports need --histories", param_hint="--reports")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.exceptions import MlflowException

    from features import FeaturesError
    from features.tracking import connect
    from serving import ServingError, batch
    from serving import queue as spot_queue
    from serving import report as case_reports

    try:
        plan = spot_queue.QueuePlan(budget, per_ring, explore, seed, max_ring_size, explore_design)
        connect()
        loaded = batch.load_model(model)
        inputs = spot_queue.queue_inputs(histories, features, links, labels)
        if inputs.spec is not None:
            batch.check_model_spec(loaded, inputs.spec)
        scored = batch.score_stores(loaded, inputs.features)
        rings = spot_queue.ring_ids(scored[spot_queue.KEY], inputs.links, max_ring_size)
        built = spot_queue.build_queue(scored, rings, inputs.labels, plan)
        paths = spot_queue.write_queue(built, out, f"Spot-check queue ({model})", table_format)
        if reports:
            picked = built.picks[spot_queue.KEY].astype(str).head(reports).tolist()
            cases, _ = case_reports.build_cases(
                loaded, model, histories, picked, (inputs.features, inputs.spec)
            )
            paths += case_reports.write_reports(cases, out / "reports")
    except (FeaturesError, ServingError, MlflowException) as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"queue of {len(built.picks)} stores from {built.eligible:,} unlabelled "
        f"({built.labelled_left_out:,} labelled left out); expected counterfeit found "
        f"{built.expected_counterfeit:.1f} -> {', '.join(map(str, paths))}",
        err=True,
    )
    _print_queue_head(built.picks, top, order="pick")


@app.command()
def report(
    store_ids: Annotated[
        list[str], typer.Argument(help="Stores to report on.", show_default=False)
    ],
    model: ModelOpt,
    histories: Annotated[
        Path, typer.Option(help="The store-histories directory.", show_default=False)
    ],
    out: Annotated[Path, typer.Option(help="Output directory.", show_default=False)],
) -> None:
    """Write a reviewer case report per store: one self-contained HTML page each.

    Score, band and model; the reasons both ways with a waterfall; evidence from the store's
    history; its linked stores; its score over six months; the most similar confirmed
    counterfeit stores. Unknown store ids are named (exit 1) after the known ones are written.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.exceptions import MlflowException

    from features import FeaturesError
    from features.tracking import connect
    from serving import ServingError, batch
    from serving import report as reports

    try:
        connect()
        loaded = batch.load_model(model)
        cases, unknown = reports.build_cases(loaded, model, histories, store_ids)
        paths = reports.write_reports(cases, out)
    except (FeaturesError, ServingError, MlflowException) as exc:
        raise fail(str(exc)) from exc
    for path in paths:
        typer.echo(f"wrote {path}", err=True)
    if unknown:
        raise fail(f"unknown store id(s), no report: {', '.join(unknown)}")


@app.command()
def serve(
    model: ServedModelOpt = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    snapshot: Annotated[
        Path | None,
        typer.Option(
            help="Feature table (spotcheck features) for POST /score_stores.", show_default=False
        ),
    ] = None,
    histories: Annotated[
        Path | None,
        typer.Option(
            help="The histories the snapshot was built from, for GET /report/{store_id}.",
            show_default=False,
        ),
    ] = None,
    max_concurrency: Annotated[
        int, typer.Option(min=1, help="Requests in flight past which the server answers 429.")
    ] = 32,
    timeout: Annotated[
        float, typer.Option(min=0.01, help="Seconds before a request is answered 504.")
    ] = 30.0,
    follow_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            help="With an alias URI (@champion): look this often for a new version and "
            "switch to it without a restart; 0 serves the version found at start.",
        ),
    ] = 30.0,
) -> None:
    """Serve a model online with BentoML's HTTP server: score, explain, model information.

    The registered version is imported into BentoML's model store under a tag made of its
    MLflow name and version; a model that is not spotcheck's, or a snapshot whose features
    are defined differently from the model's, is refused before the server starts. Served
    by alias, the service follows the alias: a newly promoted version is loaded beside the
    one serving and takes over once warm.
    """
    from mlflow.exceptions import MlflowException

    from features import FeaturesError
    from serving import ServingError
    from serving.bento import import_to_store, server_command

    uri = model or champion_uri()
    if histories is not None and snapshot is None:
        raise typer.BadParameter("--histories goes with --snapshot (the features built from them)")
    if histories is not None and not histories.is_dir():
        raise fail(f"histories directory {histories} does not exist")
    try:
        tag = import_to_store(uri, snapshot)
    except (FeaturesError, ServingError, MlflowException) as exc:
        raise fail(str(exc)) from exc
    env = {
        **os.environ,
        "SPOTCHECK_SERVE_BENTO_MODEL": tag,
        "SPOTCHECK_SERVE_MAX_CONCURRENCY": str(max_concurrency),
        "SPOTCHECK_SERVE_TIMEOUT": str(timeout),
    }
    if snapshot is not None:
        env["SPOTCHECK_SERVE_SNAPSHOT"] = str(snapshot.resolve())
    if histories is not None:
        env["SPOTCHECK_SERVE_HISTORIES"] = str(histories.resolve())
    if "@" in uri and follow_seconds > 0:
        env["SPOTCHECK_SERVE_FOLLOW"] = uri
        env["SPOTCHECK_SERVE_FOLLOW_SECONDS"] = str(follow_seconds)
    command = server_command(host, port)
    typer.echo(f"serving {uri} (BentoML model {tag}) on http://{host}:{port}", err=True)
    # Replace this process: signals (SIGTERM for a graceful stop) reach BentoML's server.
    os.execvpe(command[0], command, env)


bento_app = typer.Typer(no_args_is_help=True, add_completion=False, help="BentoML Bentos.")


@bento_app.command("build")
def bento_build(
    model: ServedModelOpt = None,
    with_reports: Annotated[
        bool, typer.Option(help="Also carry the report code and DuckDB (GET /report).")
    ] = False,
) -> None:
    """Build a Bento of the service and the model: only serving dependencies, no training code.

    Prints the Bento's tag; serve it with ``bentoml serve TAG`` (BENTOML_HOME as here).
    """
    from mlflow.exceptions import MlflowException

    from features import FeaturesError
    from serving import ServingError
    from serving.bento import build_bento

    uri = model or champion_uri()
    try:
        tag = build_bento(uri, with_reports)
    except (FeaturesError, ServingError, MlflowException) as exc:
        raise fail(str(exc)) from exc
    typer.echo(tag)
