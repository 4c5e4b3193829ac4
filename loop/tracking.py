"""The backtest in MLflow: one parent run, a child run per month with every policy's figures."""

from __future__ import annotations

from pathlib import Path

PARENT_TAG = "mlflow.parentRunId"


def experiment_client():
    """An MLflow client on the configured store, and the id of the configured experiment."""
    from features.tracking import connect
    from training.settings import load_settings

    settings = load_settings()
    client = connect(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(settings.experiment)
    )
    return client, experiment_id


def log_backtest(written: dict, out: Path) -> str:
    """Log the figures (child run per month) and the output files (parent); the parent's id."""
    client, experiment_id = experiment_client()
    summary = written["summary"]
    parent = client.create_run(
        experiment_id, run_name="backtest", tags={"spotcheck.kind": "backtest"}
    )
    pid = parent.info.run_id
    for key, value in summary["plan"].items():
        client.log_param(pid, key, value)
    for row in written["ratios"].to_dict(orient="records"):
        client.log_metric(pid, f"ratio_vs_{row['policy']}", float(row["ratio"]))
        client.log_metric(pid, f"ratio_vs_{row['policy']}_ci_low", float(row["ci_low"]))
    for policy, totals in summary["totals"].items():
        client.log_metric(pid, f"{policy}.found", totals["found"])
    for figure, values in (summary.get("ipw_from_second_month") or {}).items():
        if isinstance(values, dict):
            for which in ("own_picks", "ipw", "truth"):
                client.log_metric(pid, f"{figure}_at_budget.{which}", values[which])
    bias = written["bias"].set_index("month") if len(written["bias"]) else None
    figures = written["figures"]
    drift = {row["month"]: row for row in summary.get("drift", [])}
    for month, group in figures.groupby("month"):
        tags = {PARENT_TAG: pid, "spotcheck.kind": "backtest-month"}
        child = client.create_run(experiment_id, run_name=f"month-{int(month) + 1}", tags=tags)
        cid = child.info.run_id
        for row in group.to_dict(orient="records"):
            for metric in ("found", "confirmed", "hit_rate", "rings", "cumulative_found"):
                client.log_metric(cid, f"{row['policy']}.{metric}", float(row[metric]))
        if bias is not None and int(month) in bias.index:
            for metric in ("precision_own_picks", "precision_ipw", "precision_truth",
                           "prevalence_ipw", "prevalence_truth"):  # fmt: skip
                client.log_metric(cid, f"model.{metric}", float(bias.loc[int(month), metric]))
        if int(month) in drift:
            row = drift[int(month)]
            client.log_metric(cid, "drift.features_drifting", row["features_drifting"])
            if row["score_psi"] is not None:
                client.log_metric(cid, "drift.score_psi", row["score_psi"])
            client.set_tag(cid, "drift.status", row["status"])
        client.set_terminated(cid)
    for path in sorted(Path(out).iterdir()):
        client.log_artifact(pid, str(path), "backtest")
    client.set_terminated(pid)
    return pid
