"""``spotcheck backtest``: replay the monthly spot-check loop on a synthetic marketplace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.cli import fail

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def backtest(
    histories: Annotated[Path, typer.Option(help="Store histories (spotcheck synth output).")],
    truth: Annotated[Path, typer.Option(help="The marketplace's truth (truth.parquet).")],
    months: Annotated[int, typer.Option(min=1, help="Months replayed (the last ones).")] = 6,
    budget: Annotated[int, typer.Option(min=1, help="Test-buys per policy and month.")] = 50,
    policies: Annotated[
        str, typer.Option(help="Comma-separated: model, rules, complaints, random.")
    ] = "model,rules,complaints,random",
    explore: Annotated[
        float, typer.Option(min=0.0, max=0.99, help="The model queue's random share.")
    ] = 0.1,
    explore_design: Annotated[
        str, typer.Option(help="stratified (budget edge + score-weighted) or uniform.")
    ] = "stratified",
    retrain: Annotated[str, typer.Option(help="monthly or never.")] = "monthly",
    trials: Annotated[int, typer.Option(min=0, help="Optuna trials per training.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    model_name: Annotated[
        str, typer.Option(help="Registered model the loop trains (kept apart from production).")
    ] = "spotcheck-backtest",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("backtest"),
) -> None:
    """Month by month, each policy test-buys BUDGET stores; the results become labels.

    Writes picks, per-month figures, policy ratios with bootstrap intervals, the selection
    bias table, summary.json and backtest.html into OUT, and one MLflow parent run with a
    child run per month.
    """
    import os
    import tempfile

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    from features import FeaturesError
    from loop import LoopError
    from loop.backtest import BacktestPlan, run_backtest, write_outputs
    from loop.tracking import log_backtest
    from training import TrainingError

    try:
        plan = BacktestPlan(
            months=months, budget=budget,
            policies=tuple(p.strip() for p in policies.split(",") if p.strip()),
            explore=explore, retrain=retrain, seed=seed, trials=trials, model_name=model_name,
            explore_design=explore_design,
        )  # fmt: skip
        if not histories.is_dir():
            raise LoopError(f"histories directory {histories} does not exist")
        with tempfile.TemporaryDirectory(prefix="spotcheck-backtest-") as work:
            result = run_backtest(
                histories, truth, plan, Path(work), lambda m: typer.echo(m, err=True)
            )
        written = write_outputs(result, out)
        run_id = log_backtest(written, out)
    except (LoopError, FeaturesError, TrainingError) as exc:
        raise fail(str(exc)) from exc
    _print_chart(written["figures"])
    for row in written["ratios"].to_dict(orient="records"):
        versus = f"model found {row['model_found']:.0f} vs {row['policy']} {row['found']:.0f}"
        if not row["found"]:
            typer.echo(f"from month 2: {versus}: no ratio (it found none)", err=True)
            continue
        typer.echo(f"from month 2: {versus}: {row['ratio']:.2f}x (95% CI {row['ci_low']:.2f}-"
                   f"{row['ci_high']:.2f})", err=True)  # fmt: skip
    pooled = written["summary"].get("ipw_from_second_month") or {}
    named = {"precision": "the model's precision at the budget",
             "prevalence": "the counterfeit share of the candidates"}  # fmt: skip
    for figure, name in named.items():
        if figure in pooled:
            v = pooled[figure]
            typer.echo(f"from month 2, {name}: own picks "
                       f"{v['own_picks']:.3f}, IPW {v['ipw']:.3f} ({v['ipw_low']:.3f}-"
                       f"{v['ipw_high']:.3f}), truth {v['truth']:.3f}", err=True)  # fmt: skip
    typer.echo(f"wrote {out}/backtest.html (MLflow run {run_id})", err=True)


def _print_chart(figures) -> None:
    """Cumulative counterfeit stores found per policy and month, as bars on stderr."""
    top = max(int(figures["cumulative_found"].max()), 1)
    typer.echo("counterfeit stores found, cumulative:", err=True)
    for (policy, month), row in figures.set_index(["policy", "month"]).iterrows():
        found = int(row["cumulative_found"])
        typer.echo(f"  {policy:<10} month {month + 1}  {'#' * round(40 * found / top)} {found}",
                   err=True)  # fmt: skip


@app.command()
def drift(
    reference: Annotated[Path, typer.Option(help="Feature table to compare against.")],
    current: Annotated[Path, typer.Option(help="This month's feature table.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="Model URI: score PSI, attribution ranking, top reasons.", show_default=False
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labels (store_id, is_counterfeit): drift among counterfeit stores.",
            show_default=False,
        ),
    ] = None,
    cohort_days: Annotated[
        int, typer.Option(min=0, help="Only counterfeit stores opened in the last N days (0: all).")
    ] = 0,
    psi_warn: Annotated[float, typer.Option(help="PSI that warns.")] = 0.1,
    psi_alert: Annotated[float, typer.Option(help="PSI that alerts.")] = 0.25,
    alpha: Annotated[float, typer.Option(help="False-discovery rate of the tests.")] = 0.05,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("drift"),
) -> None:
    """Compare two feature tables: score PSI, per-feature drift, top reasons; exit 0.

    Writes drift.html, drift.json and features.parquet into OUT and logs an MLflow run.
    Prints the status (ok, warn, alert) and the drifting features.
    """
    from features import FeaturesError
    from loop import LoopError
    from loop.drift import DriftThresholds
    from loop.monitor import run_drift
    from serving import ServingError

    try:
        thresholds = DriftThresholds(psi_warn=psi_warn, psi_alert=psi_alert, alpha=alpha)
        report, run_id = run_drift(
            reference, current, model, labels, thresholds, out, cohort_days or None
        )
    except (LoopError, FeaturesError, ServingError) as exc:
        raise fail(str(exc)) from exc
    score = report["score_psi"]
    typer.echo(f"status {report['status']}; score PSI "
               f"{'-' if score is None else f'{score:.3f}'}", err=True)  # fmt: skip
    for name in ("features", "counterfeit_features"):
        table = report.get(name)
        if table is not None:
            drifting = table[table["drifts"]]
            shown = ", ".join(
                f"{f} ({p:.2f})"
                for f, p in zip(drifting["feature"][:8], drifting["psi"][:8], strict=False)
            )
            typer.echo(f"{name.replace('_', ' ')} drifting: {len(drifting)} {shown}", err=True)
    typer.echo(f"wrote {out}/drift.html (MLflow run {run_id})", err=True)
