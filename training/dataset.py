"""Training data: load a team's own files or build from histories, check them, split by time.

Every path ends in a ``TrainingData``: one row per label with ``store_id``, ``as_of`` (the
label time, when labels carry one), the FeatureSpec's columns and ``is_counterfeit``. The
split keeps the most recent labels as the holdout; every earlier label is a development row
(``training.crossfit`` folds them for tuning, rounds and calibration).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.byo import (
    LABEL,
    LABEL_TIME,
    check_keys,
    check_labels,
    check_links,
    feature_columns,
    feature_spec_for,
    is_neighbour_aggregate,
    match_feature_times,
    out_of_fold_groups,
    own_link_features,
    read_table,
)
from features.links import LINK_PREFIX
from features.spec import AS_OF, KEY, FeatureSpec
from training import TrainingError
from training.crossfit import MIN_FOLD_POSITIVES, MIN_FOLDS
from training.settings import TEST_FRACTION, Settings

TIME = AS_OF
# The holdout grows past TEST_FRACTION only as far as it must to hold enough positives.
MAX_TEST_FRACTION = 0.35
PRICE_FEATURE = "price_to_reference_median"
UNTIMED_FEATURES_WARNING = (
    "WARNING: the labels carry labeled_at but the features have no as_of column, so every "
    "label of a store is matched to the same feature row, whatever the label's time; features "
    "computed after a label was set can teach the model the answer and inflate every figure "
    "(measured on end-of-history features: holdout PR-AUC 0.98 against 0.62 point in time). "
    "Give the features an as_of column, one row per store and time."
)


class TrainingDataError(TrainingError):
    """Training input is unusable; the message says what, where and how many."""


@dataclass(frozen=True)
class TrainingData:
    """Labelled feature rows ready to split.

    Attributes:
        frame: ``store_id``, optional ``as_of``, ``spec.names`` and ``is_counterfeit``,
            sorted by (``as_of``,) ``store_id`` so input order never changes a result.
        spec: FeatureSpec of the feature columns.
        source: Where the data came from (paths), for MLflow.
        price_column: Feature the price-rule baseline ranks by (lower = riskier), or None.
        notes: Warnings and remarks about the data, shown and logged with the run.
        feature_sets: Named candidate feature sets (smallest first) that training chooses
            between by cross-validation; empty: the spec's features, no choice.
    """

    frame: pd.DataFrame
    spec: FeatureSpec
    source: str
    price_column: str | None
    notes: tuple[str, ...] = ()
    feature_sets: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def timed(self) -> bool:
        """True when every row carries its label time."""
        return TIME in self.frame.columns and bool(self.frame[TIME].notna().all())

    @property
    def digest(self) -> str:
        """SHA-256 over column names, dtypes and every value of the frame."""
        return frame_digest(self.frame)


@dataclass(frozen=True)
class Split:
    """Development rows and the holdout, and how they were cut.

    Attributes:
        development: Every row the model may learn from: cross-validation folds over them
            tune it, pick its rounds and fit its calibrator.
        test: The holdout: the most recent labels (or a stratified sample without label
            times). The model evaluated on it was fit on ``development`` only.
        method: ``time`` or ``stratified``.
    """

    development: pd.DataFrame
    test: pd.DataFrame
    method: str

    def parts(self) -> dict[str, pd.DataFrame]:
        """The two parts by name."""
        return {"development": self.development, "test": self.test}

    def describe(self) -> dict[str, object]:
        """Sizes, positives and (for a time split) periods of each part, for logging."""
        out: dict[str, object] = {"split_method": self.method}
        for name, part in self.parts().items():
            out[f"{name}_rows"] = len(part)
            out[f"{name}_positives"] = int(part[LABEL].sum())
            if self.method == "time":
                out[f"{name}_from"] = str(part[TIME].min())
                out[f"{name}_to"] = str(part[TIME].max())
        return out


def frame_digest(frame: pd.DataFrame) -> str:
    """Content hash of a frame: equal data gives an equal digest on any machine."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[c, str(frame[c].dtype)] for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _pick_price_column(spec: FeatureSpec, price_column: str | None) -> str | None:
    if price_column is None:
        return PRICE_FEATURE if PRICE_FEATURE in spec.names else None
    if price_column not in spec.names or spec[price_column].dtype == "category":
        raise TrainingDataError(f"price column {price_column!r} is not a numeric feature column")
    return price_column


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    by = [TIME, KEY] if TIME in frame.columns else [KEY]
    return frame.sort_values(by, kind="stable").reset_index(drop=True)


def load_own_data(
    features_path: str | Path,
    labels_path: str | Path,
    links_path: str | Path | None = None,
    price_column: str | None = None,
) -> TrainingData:
    """Load a team's own feature, label and (optional) link files for training.

    Link features are added with ``features.byo.own_link_features``, counting only the
    given labels, only those labelled before a row's label time, never the row's own label.

    Args:
        features_path: ``store_id`` plus numeric or string-categorical feature columns.
        labels_path: ``store_id``, ``is_counterfeit`` (0/1), optional ``labeled_at``.
        links_path: ``store_id``, ``linked_store_id``, optional ``kind``.
        price_column: Feature the price-rule baseline uses (default
            ``price_to_reference_median`` when present, else the baseline is skipped).

    Returns:
        One row per label. With an ``as_of`` column in the features (rows per store and
        time), each label takes the store's latest row at or before its ``labeled_at``;
        without one, every label of a store takes its one row, and a warning goes into
        ``notes`` when the labels carry times the features cannot honour.

    Raises:
        OwnDataError: For unusable files (``features.byo``), before anything is trained.
        TrainingDataError: For a price column that is not a numeric feature.
    """
    features = read_table(features_path, "features")
    check_keys(features, "features", features_path)
    columns = feature_columns(features, features_path)
    spec = feature_spec_for(features, columns)
    labels = check_labels(read_table(labels_path, "labels"), features[KEY], labels_path)
    notes: list[str] = []
    if TIME in features.columns:
        if LABEL_TIME not in labels.columns:
            raise TrainingDataError(
                f"features file {features_path} has rows per store and {TIME}, but labels file "
                f"{labels_path} has no {LABEL_TIME} to match them to"
            )
        rows = match_feature_times(labels, features, columns, features_path)
    else:
        rows = labels.merge(features[[KEY, *columns]], on=KEY, how="left", validate="many_to_one")
        if LABEL_TIME in labels.columns:
            notes.append(UNTIMED_FEATURES_WARNING)
    if LABEL_TIME in rows.columns:
        rows = rows.rename(columns={LABEL_TIME: TIME})
    if links_path is not None:
        links = check_links(read_table(links_path, "links"), links_path)
        rows, spec, link_notes = _with_links(rows, features, spec, links, labels)
        notes += link_notes
    frame = rows[[c for c in (KEY, TIME) if c in rows.columns] + spec.names + [LABEL]]
    source = f"features={features_path}; labels={labels_path}"
    if links_path is not None:
        source += f"; links={links_path}"
    price = _pick_price_column(spec, price_column)
    return TrainingData(_sorted(frame), spec, source, price, tuple(notes), _feature_sets(spec))


def _feature_sets(spec: FeatureSpec) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Candidate feature sets of a team's data with links, smallest first.

    Links help where they carry the signal and add noise where they do not (hundreds of
    neighbour aggregates on a few hundred labels): training picks by cross-validation.
    """
    names = spec.names
    links = [n for n in names if n.startswith(LINK_PREFIX)]
    if not links:
        return ()
    own = tuple(n for n in names if not n.startswith(LINK_PREFIX))
    without_aggregates = tuple(n for n in names if not is_neighbour_aggregate(n))
    sets = [("own", own), ("own_and_link_counts", without_aggregates), ("all", tuple(names))]
    unique: dict[tuple[str, ...], str] = {}
    for name, columns in sets:
        if columns and columns not in unique:
            unique[columns] = name
    return tuple((name, columns) for columns, name in unique.items())


def _with_links(
    rows: pd.DataFrame,
    features: pd.DataFrame,
    spec: FeatureSpec,
    links: pd.DataFrame,
    labels: pd.DataFrame,
) -> tuple[pd.DataFrame, FeatureSpec, list[str]]:
    """Add link features to labelled rows (``as_of`` = label time when known).

    Without label times, a row sees the labels of stores outside its out-of-fold group only
    (``features.byo.out_of_fold_groups``). Link columns that are constant or missing over
    every labelled row carry nothing and are dropped (a note says which).
    """
    groups = None if TIME in rows.columns else out_of_fold_groups(labels[KEY])
    linked, link_spec = own_link_features(
        rows.reset_index(drop=True), features, links, labels, spec, groups
    )
    degenerate = [n for n in link_spec.names if linked[n].nunique(dropna=True) <= 1]
    notes = []
    if degenerate:
        shown = ", ".join(degenerate[:8]) + (" ..." if len(degenerate) > 8 else "")
        notes.append(
            f"{len(degenerate)} of {len(link_spec)} link columns are constant or missing over "
            f"every labelled store and were dropped: {shown}"
        )
        link_spec = link_spec.select(n for n in link_spec.names if n not in set(degenerate))
    out = pd.concat([rows.reset_index(drop=True), linked[link_spec.names]], axis=1)
    return out, spec + link_spec, notes


def load_histories(directory: str | Path) -> TrainingData:
    """Build point-in-time training rows (one per label) from a histories directory.

    The feature builder validates the directory first; every row's features use only
    events before its label time.
    """
    from features.build import build_training_table
    from features.contract.histories import open_histories

    directory = Path(directory)
    features, spec = build_training_table(directory)
    con = open_histories(directory, tables=("labels",))
    labels = con.execute(f"SELECT store_id, labeled_at AS {TIME}, {LABEL} FROM labels").fetch_df()
    frame = features.merge(labels, on=[KEY, TIME], how="left", validate="one_to_one")
    if frame[LABEL].isna().any():
        raise TrainingDataError(f"{directory}: some feature rows do not match a label")
    frame[LABEL] = frame[LABEL].astype("int64")
    frame = frame[[KEY, TIME, *spec.names, LABEL]]
    price = PRICE_FEATURE if PRICE_FEATURE in spec.names else None
    return TrainingData(_sorted(frame), spec, f"histories={directory}", price)


def check_classes(y: pd.Series, settings: Settings) -> None:
    """Raise unless both classes are present with enough rows for a holdout and folds.

    Raises:
        TrainingDataError: Saying how many positives/negatives were found and needed.
    """
    counts = y.value_counts()
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else "nothing"
        raise TrainingDataError(
            f"labels hold a single class ({LABEL}={only} for all {len(y)} rows); "
            "training needs both counterfeit (1) and genuine (0) stores"
        )
    needed = minimum_positives(settings)
    for value, name in ((1, "positive (counterfeit)"), (0, "negative (genuine)")):
        found = int(counts.get(value, 0))
        if found < needed:
            raise TrainingDataError(
                f"found {found} {name} labels; training needs at least {needed}: "
                f"{settings.min_positives_per_split} for the holdout and {MIN_FOLD_POSITIVES} "
                f"in each of {MIN_FOLDS} cross-validation folds and their training rows"
            )


def minimum_positives(settings: Settings) -> int:
    """Fewest labels of each class a run can work with (see ``check_classes``).

    The holdout needs ``min_positives_per_split`` positives to measure anything; the
    development rows need ``MIN_FOLD_POSITIVES`` in each of ``MIN_FOLDS`` validation folds,
    and (with expanding windows) a first block to train on.
    """
    return settings.min_positives_per_split + (MIN_FOLDS + 1) * MIN_FOLD_POSITIVES


def _time_split(frame: pd.DataFrame, min_positives: int) -> Split:
    """The most recent labels are the holdout: a fifth of them, or more to hold enough positives.

    The cut lies at a label time, so no timestamp straddles it.
    """
    times = frame[TIME]
    test_start = times.iloc[int(len(frame) * (1 - TEST_FRACTION))]
    positive_times = times[frame[LABEL] == 1].sort_values()
    if 0 < min_positives <= len(positive_times):
        # With few positives, reach back to the min_positives-th most recent one, but no
        # further than MAX_TEST_FRACTION of the rows.
        furthest = times.iloc[int(len(frame) * (1 - MAX_TEST_FRACTION))]
        test_start = min(test_start, max(positive_times.iloc[-min_positives], furthest))
    return Split(
        development=frame[times < test_start].reset_index(drop=True),
        test=frame[times >= test_start].reset_index(drop=True),
        method="time",
    )


def _stratified_split(frame: pd.DataFrame, seed: int, min_positives: int) -> Split:
    """A stratified holdout: a fifth of the rows, or more to hold enough positives."""
    from sklearn.model_selection import train_test_split

    positives = int(frame[LABEL].sum())
    share = max(TEST_FRACTION, (min_positives + 0.5) / max(positives, 1))
    index = np.arange(len(frame))
    development, test = train_test_split(
        index, test_size=min(share, MAX_TEST_FRACTION), stratify=frame[LABEL], random_state=seed
    )
    part = lambda idx: frame.iloc[np.sort(idx)].reset_index(drop=True)  # noqa: E731
    return Split(part(development), part(test), "stratified")


def split(data: TrainingData, seed: int, settings: Settings) -> Split:
    """Split into development rows and a holdout, by label time when known, else stratified.

    The holdout is a fifth of the labels, more (up to 35%) when that is what it takes to
    hold ``min_positives_per_split`` positives: small data sets still get a holdout that
    can measure something, and cross-fitting uses every other label.

    Raises:
        TrainingDataError: A class is missing or too rare overall or in the holdout.
    """
    check_classes(data.frame[LABEL], settings)
    needed = settings.min_positives_per_split
    if data.timed:
        parts = _time_split(data.frame, needed)
    else:
        parts = _stratified_split(data.frame, seed, needed)
    test = parts.test
    positives = int(test[LABEL].sum())
    if positives < needed or positives == len(test):
        where = f"the holdout ({len(test)} rows"
        if parts.method == "time" and len(test):
            where += f", labels from {test[TIME].min()} to {test[TIME].max()}"
        hint = (
            "label times may be too concentrated to split by time"
            if parts.method == "time"
            else "too few positive labels to hold some out"
        )
        raise TrainingDataError(
            f"{where}) holds {positives} positive labels; it needs at least {needed} "
            f"positives and some negatives ({hint})"
        )
    return parts
