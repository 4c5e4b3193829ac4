"""typer commands of the features package: ``validate``, ``synth`` and ``features``.

Heavy modules are imported inside the commands so that ``spotcheck --help`` stays instant.
Exit codes, the same for every ``spotcheck`` command: 0 success; 1 the input, data, model
or environment is unusable (``error: ...`` on stderr, nothing written); 2 a command-line
usage error (typer's own); 3 ``promote`` rejected the challenger.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)

HistoriesOpt = Annotated[
    Path | None, typer.Option("--histories", help="Store-histories directory.", show_default=False)
]
FeaturesOpt = Annotated[
    Path | None,
    typer.Option(
        "--features",
        help="Your own feature table (Parquet/CSV): store_id + numeric/categorical columns.",
        show_default=False,
    ),
]
LinksOpt = Annotated[
    Path | None,
    typer.Option(
        "--links", help="Store links: store_id, linked_store_id[, kind].", show_default=False
    ),
]


EXIT_ERROR = 1
"""Exit code for unusable input, data, model or environment (2 is typer's usage error)."""


def fail(message: str) -> typer.Exit:
    """Print ``error: MESSAGE`` on stderr; return the exit to raise (code ``EXIT_ERROR``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def _parse_now(value: str | None) -> datetime | None:
    """Parse ``--now`` (ISO 8601; naive means UTC)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from exc


@app.command()
def validate(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Histories directory: one Parquet/CSV file or Parquet folder per table."
        ),
    ],
    now: Annotated[
        str | None,
        typer.Option(
            help="Timestamps after this ISO 8601 instant are errors (naive = UTC). "
            "Default: the current UTC time.",
        ),
    ] = None,
) -> None:
    """Check a store-histories directory against the data contract.

    Prints rows per table, time range and label counts. Writes nothing.
    On bad input prints every violation (table, column, rows, example keys) and exits 1.
    """
    from rich.console import Console

    from features import FeaturesError
    from features.contract.report import print_report
    from features.contract.validation import validate_histories

    now_utc = _parse_now(now)
    try:
        with Console(stderr=True).status("validating") as status:
            report = validate_histories(
                directory, now=now_utc, progress=lambda step: status.update(f"validating {step}")
            )
    except FeaturesError as exc:
        raise fail(str(exc)) from exc
    print_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_ERROR)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output histories directory (absent or empty).")],
    stores: Annotated[int, typer.Option(min=100, help="Number of stores (at least 100).")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed and stores, same files.")] = 0,
    start: Annotated[str, typer.Option(help="First day of the period (UTC), YYYY-MM-DD.")] = (
        "2024-07-01"
    ),
    months: Annotated[int, typer.Option(help="Length of the period in months.")] = 24,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Generate a synthetic marketplace: contract histories plus truth.parquet.

    truth.parquet (store_id, is_counterfeit, ring_id) is for evaluation only. Written to a
    temporary directory next to --out and renamed into place at the end.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table as RichTable

    from features import FeaturesError
    from features.synth.generate import generate_marketplace

    if out.is_dir() and any(out.iterdir()) and not force:
        raise typer.BadParameter(
            f"{str(out)!r} is not empty; --force replaces it", param_hint="--out"
        )
    console = Console()
    columns = (
        TextColumn("[bold]synth[/] blocks"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("synth", total=None, events=0)

        def report(done: int, total: int, events: int) -> None:
            bar.update(task, completed=done, total=total, events=events)

        try:
            summary = generate_marketplace(out, stores, seed, start, months, force, report)
        except FeaturesError as exc:
            raise fail(str(exc)) from exc
    console.print(f"synthetic marketplace written to [bold]{summary.out}[/]")
    table = RichTable()
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in summary.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(
        f"period {summary.start} .. {summary.end} (end exclusive), seed {summary.seed}\n"
        f"counterfeit stores {summary.counterfeit_stores:,} ({summary.counterfeit_share:.2%}), "
        f"{summary.rings} rings with {summary.ring_stores:,} stores "
        f"({summary.reopened_stores:,} re-opened after a ban)\n"
        f"labels {summary.labels:,} on {summary.labeled_stores:,} stores "
        f"({summary.labeled_share:.2%}; {summary.label_counterfeit_truth_share:.0%} of them "
        f"truly counterfeit)\n"
        f"{summary.events:,} events in {summary.seconds:.1f} s"
    )


@app.command("features")
def features_command(
    histories: Annotated[
        Path, typer.Option(help="Store-histories directory (one table per file or folder).")
    ],
    out: Annotated[
        Path,
        typer.Option(help="Output file, .parquet or .csv; its FeatureSpec goes to FILE.spec.json."),
    ],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="ISO 8601 as-of time (naive = UTC): one row per store open before it, using "
            "only events before it. Default: the end of the histories.",
        ),
    ] = None,
    training: Annotated[
        bool,
        typer.Option(help="One row per label instead, each as of its labeled_at."),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="duckdb (in-process, the reference) or spark (the same features on a Spark "
            "cluster; --out is then a folder of Parquet parts)."
        ),
    ] = "duckdb",
    spark_master: Annotated[
        str | None,
        typer.Option(help="Spark master URL (default $SPOTCHECK_SPARK_MASTER or local[2])."),
    ] = None,
) -> None:
    """Build point-in-time store features (one row per store, or per label with --training).

    With the DuckDB engine, validates the histories first; on a contract violation prints
    every problem, writes nothing and exits 1. The Spark engine checks the tables and
    columns, and fails on a value its typed views cannot cast (Spark's ANSI mode); validate
    a big marketplace in parts with ``spotcheck validate`` beforehand.
    """
    if engine == "spark":
        _features_on_spark(histories, out, as_of, training, spark_master)
        return
    if engine != "duckdb":
        raise typer.BadParameter(f"{engine!r}: use duckdb or spark", param_hint="--engine")
    import time

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from features import FeaturesError
    from features.build import (
        FeatureBuildError,
        build_feature_table,
        build_training_table,
        to_utc_timestamp,
        write_feature_table,
    )

    if training and as_of is not None:
        raise typer.BadParameter("--as-of does not apply with --training (rows use labeled_at)")
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter(f"--out {str(out)!r}: use a .parquet or .csv file name")
    try:
        when = None if as_of is None else to_utc_timestamp(as_of)
    except FeatureBuildError as exc:
        raise typer.BadParameter(str(exc)) from exc

    console = Console(stderr=True)
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]features[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("starting", total=None)

            def report(step: str, done: int, total: int) -> None:
                bar.update(task, description=step, completed=done, total=total or None)

            if training:
                table, spec = build_training_table(histories, progress=report)
            else:
                table, spec = build_feature_table(histories, when, progress=report)
            report("writing", 0, 0)
            spec_file = write_feature_table(table, spec, out)
    except FeaturesError as exc:
        raise fail(str(exc)) from exc
    seconds = time.perf_counter() - started
    rows_as_of = (
        "per label" if training else f"as of {table['as_of'].max() if len(table) else when}"
    )
    typer.echo(
        f"wrote {out} ({len(table):,} rows x {len(spec)} features, {rows_as_of}) and {spec_file}\n"
        f"spec hash {spec.hash}\n"
        f"took {seconds:.1f} s"
    )


def _features_on_spark(
    histories: Path, out: Path, as_of: str | None, training: bool, master: str | None
) -> None:
    """``spotcheck features --engine spark``: build on Spark, write a folder of Parquet parts."""
    import time

    from features import FeaturesError
    from features.build import FeatureBuildError, to_utc_timestamp

    if training and as_of is not None:
        raise typer.BadParameter("--as-of does not apply with --training (rows use labeled_at)")
    if out.suffix.lower() == ".csv":
        raise typer.BadParameter(f"--out {str(out)!r}: Spark writes a folder of Parquet parts")
    try:
        when = None if as_of is None else str(to_utc_timestamp(as_of))
    except FeatureBuildError as exc:
        raise typer.BadParameter(str(exc)) from exc
    from pyspark.errors import PySparkException

    from features.spark_build import (
        build_feature_table_spark,
        features_for_keys_spark,
        training_keys_spark,
        write_feature_table_spark,
    )
    from features.spark_session import spark_session

    started = time.perf_counter()
    try:
        spark = spark_session(master)
        if training:
            table, spec = features_for_keys_spark(
                spark, histories, training_keys_spark(spark, histories)
            )
        else:
            table, spec = build_feature_table_spark(spark, histories, when)
        spec_file = write_feature_table_spark(table, spec, out)
    except FeaturesError as exc:
        raise fail(str(exc)) from exc
    except PySparkException as exc:
        # Spark's message names the failing cast or column; its stack trace says no more.
        raise fail(f"Spark: {str(exc).splitlines()[0]}") from exc
    rows = spark.read.parquet(str(out)).count()
    typer.echo(
        f"wrote {out}/ ({rows:,} rows x {len(spec)} features, Spark {spark.sparkContext.master}) "
        f"and {spec_file}\nspec hash {spec.hash}\ntook {time.perf_counter() - started:.1f} s"
    )
