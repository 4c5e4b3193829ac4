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
from features.scoring.reasons import MITIGATING_REASONS, RISK_REASONS

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(no_args_is_help=True, add_completion=False)


def _print_queue_head(scored: pd.DataFrame, top: int) -> None:
    """Print the head of the spot-check queue: rank, store, score and its top reason."""
    if top <= 0:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"spot-check queue: riskiest {min(top, len(scored))} stores")
    for column in ("rank", "store_id", "score", "top reason"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for row in scored.head(top).itertuples(index=False):
        table.add_row(str(row.rank), str(row.store_id), f"{row.score:.3f}", str(row.reason_1))
    Console().print(table)


@app.command()
def score(
    model: Annotated[
        str,
        typer.Option(
            help="models:/NAME@champion, models:/NAME/3 or runs:/RUN_ID/model.",
            show_default=False,
        ),
    ],
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
) -> None:
    """Score every store: score, rank, base value and its reasons both ways.

    Every score comes with its explanation in log-odds (base_value + contributions =
    raw_score): the top risk-raising reasons, the top mitigating ones, and the contribution
    of each feature group. Each reason names the feature, the store's value, what is normal
    among genuine stores and the store's percentile among them.
    """
    if (histories is None) == (features is None):
        raise typer.BadParameter("give exactly one of --histories DIR or --features FILE")
    if histories is not None and (labels is not None or links is not None):
        raise typer.BadParameter("--labels/--links go with --features; histories carry their own")
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
            table = batch.features_from_histories(histories)
        else:
            table = scoring_table(features, links, labels)
        scored = batch.score_stores(loaded, table, reasons, mitigating)
        path = write_table(scored, out)
    except (FeaturesError, ServingError, MlflowException) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"scored {len(scored)} stores with {model} -> {path}", err=True)
    _print_queue_head(scored, top)
