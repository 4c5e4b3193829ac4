"""``spotcheck drift`` end to end: read the tables, compare, write the page, log to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from features.spec import KEY
from loop import LoopError
from loop.drift import DriftThresholds, drift_report


def _table_and_spec(path: Path):
    from features.spec import FeatureSpec

    sidecar = path.with_name(path.name + ".spec.json")
    if not path.is_file():
        raise LoopError(f"feature table {path} does not exist")
    if not sidecar.is_file():
        raise LoopError(f"feature table {path} has no FeatureSpec ({sidecar.name} is missing)")
    return pd.read_parquet(path), FeatureSpec.from_json(sidecar.read_text())


def run_drift(reference: Path, current: Path, model: str | None, labels: Path | None,
              thresholds: DriftThresholds, out: Path,
              cohort_days: int | None = None) -> tuple[dict, str]:  # fmt: skip
    """Compare the tables, write ``out`` whole, log an MLflow run; the report and run id.

    Raises:
        LoopError: A missing table or sidecar, or tables built with different FeatureSpecs.
        ServingError: The model does not load or its features differ from the tables'.
    """
    ref, ref_spec = _table_and_spec(Path(reference))
    cur, cur_spec = _table_and_spec(Path(current))
    if ref_spec.hash != cur_spec.hash:
        raise LoopError(f"the tables were built with different FeatureSpecs: {reference} "
                        f"{ref_spec.hash[:12]}, {current} {cur_spec.hash[:12]}")  # fmt: skip
    scorer, spec = None, ref_spec
    if model is not None:
        from features.scoring.model import scorer_of
        from serving.batch import check_model_spec, load_model

        loaded = load_model(model)
        check_model_spec(loaded, ref_spec)
        scorer = scorer_of(loaded)
        spec = scorer.spec
    counterfeit = None
    if labels is not None:
        from features.byo import check_labels, read_table

        known = check_labels(read_table(labels, "labels"), None, labels)
        counterfeit = set(known.loc[known["is_counterfeit"] == 1, KEY].astype(str))
    report = drift_report(ref, cur, spec, thresholds, scorer, counterfeit, cohort_days)
    _write(report, thresholds, reference, current, model, out)
    return report, _log(report, out)


def _write(report: dict, thresholds: DriftThresholds, reference: Path, current: Path,
           model: str | None, out: Path) -> None:  # fmt: skip
    from loop.output import staged_directory
    from loop.report import drift_html

    with staged_directory(out) as tmp:
        report["features"].to_parquet(tmp / "features.parquet", index=False)
        summary = {
            "status": report["status"], "score_psi": report["score_psi"],
            "reference": str(reference), "current": str(current), "model": model,
            "thresholds": thresholds.__dict__,
            "drifting_features": report["features"].loc[report["features"]["drifts"], "feature"]
            .tolist(),
        }  # fmt: skip
        if report.get("counterfeit_features") is not None:
            table = report["counterfeit_features"]
            summary["drifting_among_counterfeit"] = table.loc[table["drifts"], "feature"].tolist()
        (tmp / "drift.json").write_text(json.dumps(summary, indent=1, default=str))
        title = f"Drift: {Path(current).name} against {Path(reference).name}"
        (tmp / "drift.html").write_text(drift_html(report, title))


def _log(report: dict, out: Path) -> str:
    from loop.tracking import experiment_client

    client, experiment_id = experiment_client()
    tags = {"spotcheck.kind": "drift", "spotcheck.drift_status": report["status"]}
    run_id = client.create_run(experiment_id, run_name="drift", tags=tags).info.run_id
    if report["score_psi"] is not None:
        client.log_metric(run_id, "score_psi", report["score_psi"])
    client.log_metric(run_id, "features_drifting", int(report["features"]["drifts"].sum()))
    if report.get("counterfeit_features") is not None:
        drifting = int(report["counterfeit_features"]["drifts"].sum())
        client.log_metric(run_id, "counterfeit_features_drifting", drifting)
    for path in sorted(Path(out).iterdir()):
        client.log_artifact(run_id, str(path), "drift")
    client.set_terminated(run_id)
    return run_id
