"""Batch scoring: every store gets a calibrated score, a rank and its top reasons.

The model is whatever MLflow resolves the URI to (``models:/NAME@champion``,
``models:/NAME/3``, ``runs:/RUN/model``), loaded through the pyfunc contract. Features come
from a histories directory (as of its end) or a team's own feature file; link features are
added the same way as in training.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException

from features.model_contract import REASON_COLUMNS, model_spec, prepare_input
from training.dataset import (
    KEY,
    RESERVED,
    TIME,
    TrainingDataError,
    check_keys,
    check_labels,
    check_links,
    feature_spec_for,
    own_link_features,
    read_table,
)

OUTPUT_COLUMNS = [KEY, "score", "rank", *REASON_COLUMNS, "reasons"]


def load_model(uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Load a registered or logged model; raise a clear error if the URI resolves to nothing."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise TrainingDataError(f"cannot load model {uri}: {exc.message}") from exc


def features_from_histories(directory: str | Path) -> pd.DataFrame:
    """Feature rows of every store as of the end of a histories directory."""
    from features.build import build_feature_table

    features, _ = build_feature_table(Path(directory))
    return features


def features_from_files(
    features_path: str | Path,
    links_path: str | Path | None = None,
    labels_path: str | Path | None = None,
) -> pd.DataFrame:
    """A team's feature file, with link features from ``links`` and known ``labels`` added.

    Link features are computed as in training. When the links or labels carry times, the
    rows are scored as of just after the latest of them (the end of the data, like the end
    of a histories directory); labels without a time then count as known by then.

    Raises:
        TrainingDataError: No ``store_id``, duplicate stores, or malformed links/labels.
    """
    features = read_table(features_path, "features")
    check_keys(features, "features", features_path)
    if links_path is None:
        return features
    links = check_links(read_table(links_path, "links"), links_path)
    labels = None
    if labels_path is not None:
        labels = check_labels(read_table(labels_path, "labels"), None, labels_path)
    rows = features[[KEY]].copy()
    as_of = _end_of_data(links, labels)
    if as_of is not None:
        rows[TIME] = as_of
        if labels is not None and "labeled_at" not in labels.columns:
            labels = labels.assign(labeled_at=as_of - pd.Timedelta(microseconds=1))
    columns = [c for c in features.columns if c not in RESERVED]
    spec = feature_spec_for(features, columns)
    linked, link_spec = own_link_features(rows, features, links, labels, spec)
    return pd.concat([features.reset_index(drop=True), linked[link_spec.names]], axis=1)


def _end_of_data(links: pd.DataFrame, labels: pd.DataFrame | None) -> pd.Timestamp | None:
    """One microsecond after the latest link or label time, or None if neither has times."""
    times = []
    if "linked_at" in links.columns:
        times.append(pd.to_datetime(links["linked_at"], utc=True).max())
    if labels is not None and "labeled_at" in labels.columns:
        times.append(pd.to_datetime(labels["labeled_at"], utc=True).max())
    times = [t for t in times if pd.notna(t)]
    if not times:
        return None
    return max(times).tz_localize(None) + pd.Timedelta(microseconds=1)


def score_stores(model: mlflow.pyfunc.PyFuncModel, features: pd.DataFrame) -> pd.DataFrame:
    """Score and rank every store (rank 1 = riskiest) with its reasons.

    Ties in the calibrated score (isotonic calibration is a step function) are broken by the
    raw booster score, then by store id, so the order is total and reproducible.
    """
    spec = model_spec(model)
    scored = model.predict(prepare_input(features, spec))
    scored.insert(0, KEY, features[KEY].to_numpy())
    scored = scored.sort_values(
        ["score", "raw_score", KEY], ascending=[False, False, True], kind="stable"
    ).reset_index(drop=True)
    scored["rank"] = range(1, len(scored) + 1)
    return scored[OUTPUT_COLUMNS]


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write Parquet or CSV (by extension) atomically: temp file, then rename into place."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise TrainingDataError(f"output {path} must end in .parquet or .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
