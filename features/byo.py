"""A team's own data: feature tables, labels and links read from files, checked, linked.

Teams that already compute store features bring them as a table (one row per store) with
labels and, optionally, links between stores. This module reads and checks those files
and adds link-graph features to them the same way for training and for scoring
(``own_link_features``). Every problem is a ``OwnDataError`` that names the file, the
column, how many rows and a few example stores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features import FeaturesError
from features.io import TABLE_SUFFIXES
from features.links import LINK_PREFIX, add_link_features, hops
from features.links.graph import build_labels
from features.links.inputs import timestamps_ns
from features.spec import AS_OF, KEY, Feature, FeatureSpec

LABEL = "is_counterfeit"
LABEL_TIME = "labeled_at"
# The as_of of the feature row a label was matched to (features with an as_of column).
FEATURE_TIME = "feature_as_of"
# Columns of a team's feature file that are never features.
RESERVED = (KEY, AS_OF, LABEL, LABEL_TIME)


class OwnDataError(FeaturesError):
    """A team's feature, label or link file is unusable; the message says what and where."""


def examples(values: pd.Series | list, n: int = 5) -> str:
    """The first ``n`` values, comma-separated, for error messages."""
    return ", ".join(map(str, list(values)[:n]))


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """Read a Parquet or CSV file (chosen by extension); ids are read as strings.

    Args:
        path: ``.parquet`` or ``.csv`` file.
        what: What the file is (``features``, ``labels``, ``links``), for messages.

    Raises:
        OwnDataError: Missing file or unknown extension.
    """
    path = Path(path)
    if not path.is_file():
        raise OwnDataError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise OwnDataError(f"{what} file {path} must be .parquet or .csv, not {suffix!r}")
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, dtype={KEY: str, "linked_store_id": str})
    for column in (KEY, "linked_store_id"):
        if column in frame.columns:
            frame[column] = frame[column].astype("str").where(frame[column].notna())
    return frame


def check_keys(frame: pd.DataFrame, what: str, path: str | Path, time: str = AS_OF) -> None:
    """Raise unless ``frame`` has a non-null ``store_id`` column, unique per ``time``.

    A feature table may hold several rows per store, one per ``as_of`` (features as they
    were then), and labels one per ``labeled_at``; without that column, one row per store.

    Args:
        frame: Features or labels as read.
        what: Table name for messages.
        path: File the table came from.
        time: The column that may repeat a store (``as_of`` or ``labeled_at``).
    """
    if KEY not in frame.columns:
        raise OwnDataError(
            f"{what} file {path} has no '{KEY}' column; columns: {examples(frame.columns, 12)}"
        )
    nulls = int(frame[KEY].isna().sum())
    if nulls:
        raise OwnDataError(f"{what} file {path}: {nulls} rows have an empty {KEY}")
    keys = [KEY, time] if time in frame.columns else [KEY]
    if time in frame.columns:
        times = pd.to_datetime(frame[time], errors="coerce", utc=True)
        bad = frame.loc[times.isna(), KEY]
        if len(bad):
            raise OwnDataError(
                f"{what} file {path}: {len(bad)} rows have an empty or unparsable {time}, "
                f"e.g. stores {examples(bad)}"
            )
    dupes = frame.loc[frame.duplicated(keys, keep=False), KEY]
    if len(dupes):
        per = f"store and {time}" if len(keys) == 2 else "store"
        raise OwnDataError(
            f"{what} file {path} has {len(dupes)} rows for {dupes.nunique()} duplicated "
            f"{KEY} values (one row per {per} expected), e.g. {examples(dupes.unique())}"
        )


def feature_columns(features: pd.DataFrame, path: str | Path) -> list[str]:
    """The feature columns of a team's feature table: all but the reserved ones.

    Raises:
        OwnDataError: The table holds a label column, or no feature column at all.
    """
    for column in (LABEL, LABEL_TIME):
        if column in features.columns:
            raise OwnDataError(
                f"features file {path} contains the label column {column!r}; labels go in "
                "the labels file so no feature can see the label it predicts"
            )
    columns = [c for c in features.columns if c not in RESERVED]
    if not columns:
        raise OwnDataError(f"features file {path} has no feature columns")
    return columns


def feature_spec_for(frame: pd.DataFrame, columns: list[str]) -> FeatureSpec:
    """FeatureSpec of a team's own feature columns (group ``custom``).

    Numeric and boolean columns keep their type; text columns become categories.

    Raises:
        OwnDataError: A column holds timestamps (convert them to a number first).
    """
    features = []
    for name in columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            raise OwnDataError(
                f"feature column {name!r} holds timestamps; convert it to a number "
                "(e.g. age in days) first"
            )
        if pd.api.types.is_bool_dtype(column):
            dtype, template = "bool", "{name} = {value}"
        elif pd.api.types.is_integer_dtype(column):
            dtype, template = "int", "{name} = {value}"
        elif pd.api.types.is_numeric_dtype(column):
            dtype, template = "float", "{name} = {value:.4g}"
        else:
            dtype, template = "category", "{name} is {value}"
        features.append(Feature(name, "custom", dtype, name, "none", template))
    return FeatureSpec(tuple(features))


def check_labels(labels: pd.DataFrame, stores: pd.Series | None, path: str | Path) -> pd.DataFrame:
    """Validate a team's labels and return ``store_id``, ``is_counterfeit`` (+ ``labeled_at``).

    Args:
        labels: Labels as read.
        stores: ``store_id`` values of the feature table; None skips the unknown-store check
            (known labels used only as link evidence may name stores no longer listed).
        path: Labels file, for messages.

    Raises:
        OwnDataError: Missing columns, values other than 0/1, duplicate stores,
            unparsable times or labels for stores absent from the features.
    """
    check_keys(labels, "labels", path, LABEL_TIME)
    if LABEL not in labels.columns:
        raise OwnDataError(f"labels file {path} has no '{LABEL}' column")
    values = pd.to_numeric(labels[LABEL], errors="coerce")
    bad = labels.loc[~values.isin([0, 1]), KEY]
    if len(bad):
        raise OwnDataError(
            f"labels file {path}: {len(bad)} rows have {LABEL} other than 0 or 1, "
            f"e.g. stores {examples(bad)}"
        )
    out = pd.DataFrame({KEY: labels[KEY], LABEL: values.astype("int64")})
    if LABEL_TIME in labels.columns:
        times = pd.to_datetime(labels[LABEL_TIME], errors="coerce", utc=True)
        bad = labels.loc[times.isna(), KEY]
        if len(bad):
            raise OwnDataError(
                f"labels file {path}: {len(bad)} rows have an empty or unparsable "
                f"{LABEL_TIME}, e.g. stores {examples(bad)}"
            )
        out[LABEL_TIME] = times.dt.tz_localize(None)
    unknown = out.loc[~out[KEY].isin(set(stores)), KEY] if stores is not None else []
    if len(unknown):
        raise OwnDataError(
            f"labels file {path} has {len(unknown)} labels for stores not in the features, "
            f"e.g. {examples(unknown)}"
        )
    return out


def check_links(links: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Return the link columns (ids, optional kind and times) or raise naming what is missing."""
    missing = [c for c in (KEY, "linked_store_id") if c not in links.columns]
    if missing:
        raise OwnDataError(f"links file {path} lacks column(s) {', '.join(missing)}")
    optional = ("kind", "linked_at", "unlinked_at")
    return links[[KEY, "linked_store_id", *(c for c in optional if c in links.columns)]]


def own_link_features(
    rows: pd.DataFrame,
    snapshot: pd.DataFrame,
    links: pd.DataFrame,
    labels: pd.DataFrame | None,
    spec: FeatureSpec,
    groups: pd.Series | None = None,
) -> tuple[pd.DataFrame, FeatureSpec]:
    """Link-graph features for a team's rows, the same way in training and scoring.

    Counts (linked stores in total and per kind present, known counterfeit neighbours,
    ring) are computed per row, as of the row's ``as_of`` when it has one, so only labels
    known before it count and never the row's own. Neighbour statistics of EVERY numeric
    feature come from the team's feature snapshot: with links that carry no times, over the
    direct and the 2-hop neighbours (mean, max, min, std), with GCN-normalised means, the
    spread of the neighbours' degrees and smoothed counterfeit shares among labelled
    neighbours 1 and 2 hops away (``features.links.hops``); with timed links or a snapshot
    per time, the mean and max over the links valid at the row's time.

    Args:
        rows: ``store_id`` and optional ``as_of``: the rows that get features.
        snapshot: The team's feature table (``store_id``, optional ``as_of``, ``spec``
            columns); with ``as_of``, ``rows`` carry the matched row's time in
            ``FEATURE_TIME``.
        links: ``store_id``, ``linked_store_id``, optional ``kind`` (and link times).
        labels: Known labels (``store_id``, ``is_counterfeit``, ``labeled_at`` when rows
            have ``as_of``), or None.
        spec: FeatureSpec of the snapshot's feature columns.
        groups: Training only, for rows without times: a group per labelled store; a row
            then sees no label of a store in its own group (labels out of fold).

    Returns:
        ``rows``' key columns plus the link columns (same row order), and their spec.
    """
    keys = [c for c in (KEY, AS_OF) if c in rows.columns]
    counted, count_spec = add_link_features(
        rows[keys].reset_index(drop=True),
        links,
        labels,
        neighbour_columns=[],
        kinds=present_kinds(links),
    )
    numeric = [f.name for f in spec if f.dtype != "category"]
    if AS_OF in snapshot.columns or "linked_at" in links.columns:
        extra, extra_spec = _timed_neighbour_features(rows, snapshot, links, spec, numeric)
    else:
        extra, extra_spec = _static_neighbour_features(rows, snapshot, links, labels, numeric,
                                                      groups)  # fmt: skip
    out = pd.concat([counted, extra.reset_index(drop=True)], axis=1)
    return out, count_spec + extra_spec


def is_neighbour_aggregate(name: str) -> bool:
    """Whether a link column aggregates the team's own features over neighbours.

    These are the many columns (every numeric feature x statistics x hops); the link counts,
    rings and label shares are few.
    """
    prefixes = tuple(f"{LINK_PREFIX}{tag}_" for tag in ("nb", "nb2", "gcn"))
    counts = {
        f"{LINK_PREFIX}nb_degree_mean",
        f"{LINK_PREFIX}nb_degree_std",
        f"{LINK_PREFIX}nb2_count",
    }
    return name.startswith(prefixes) and name not in counts


def present_kinds(links: pd.DataFrame, most: int = 10) -> tuple[str, ...]:
    """The link kinds present in ``links`` (each gets its own columns), at most ``most``."""
    if "kind" not in links.columns:
        return ()
    kinds = sorted(str(k) for k in links["kind"].dropna().unique())
    return tuple(kinds) if len(kinds) <= most else ()


def _timed_neighbour_features(
    rows: pd.DataFrame,
    snapshot: pd.DataFrame,
    links: pd.DataFrame,
    spec: FeatureSpec,
    numeric: list[str],
) -> tuple[pd.DataFrame, FeatureSpec]:
    """Mean and max of every numeric column over the links valid at each row's time."""
    timed = AS_OF in snapshot.columns
    snapshot_keys = [KEY, AS_OF] if timed else [KEY]
    neighbours, neighbour_spec = add_link_features(
        _naive_times(snapshot[[*snapshot_keys, *numeric]]),
        links,
        None,
        neighbour_columns=numeric,
        base_spec=spec,
    )
    aggregates = [n for n in neighbour_spec.names if n.startswith(f"{LINK_PREFIX}nb_")]
    frame = rows[[KEY]].reset_index(drop=True)
    if timed:
        # Each row takes the aggregates of the feature snapshot it was matched to.
        frame[FEATURE_TIME] = rows[FEATURE_TIME].to_numpy()
        neighbours = neighbours.rename(columns={AS_OF: FEATURE_TIME})
        on = [KEY, FEATURE_TIME]
    else:
        on = [KEY]
    merged = frame.merge(neighbours[[*on, *aggregates]], on=on, how="left", validate="many_to_one")
    return merged[aggregates], neighbour_spec.select(aggregates)


def _static_neighbour_features(
    rows: pd.DataFrame,
    snapshot: pd.DataFrame,
    links: pd.DataFrame,
    labels: pd.DataFrame | None,
    numeric: list[str],
    groups: pd.Series | None,
) -> tuple[pd.DataFrame, FeatureSpec]:
    """1- and 2-hop statistics, GCN means, degree spread and label shares (links untimed)."""
    graph = hops.static_graph(links, snapshot[KEY])
    nodes = graph.nodes.get_indexer(rows[KEY])
    values = np.full((len(graph.nodes), len(numeric)), np.nan)
    present = graph.nodes.get_indexer(snapshot[KEY])
    values[present] = snapshot[numeric].to_numpy(dtype="float64", na_value=np.nan)
    columns: dict[str, np.ndarray] = {}
    patterns = [("nb", graph.adjacency)]
    if graph.two_hop is not None:
        patterns.append(("nb2", graph.two_hop))
    for tag, pattern in patterns:
        stats = hops.neighbour_statistics(pattern, values, nodes)
        for j, column in enumerate(numeric):
            for stat in hops.STATS:
                columns[f"{LINK_PREFIX}{tag}_{stat}_{column}"] = stats[stat][:, j]
    gcn = hops.gcn_means(graph, values, nodes)
    for j, column in enumerate(numeric):
        columns[f"{LINK_PREFIX}gcn_{column}"] = gcn[:, j]
    spread = hops.degree_spread(graph, nodes)
    columns[f"{LINK_PREFIX}nb_degree_mean"] = spread["mean"]
    columns[f"{LINK_PREFIX}nb_degree_std"] = spread["std"]
    columns.update(_label_shares(graph, rows, nodes, labels, groups))
    spec = FeatureSpec(tuple(hops.hop_specs(LINK_PREFIX, numeric, graph.two_hop is not None)))
    frame = pd.DataFrame(columns)
    return frame[spec.names], spec


def _label_shares(
    graph: hops.StaticGraph,
    rows: pd.DataFrame,
    nodes: np.ndarray,
    labels: pd.DataFrame | None,
    groups: pd.Series | None,
) -> dict[str, np.ndarray]:
    """Smoothed counterfeit shares among labelled stores 1 (and 2) links away."""
    two = graph.two_hop is not None
    p = LINK_PREFIX
    if labels is None or not len(labels):
        empty = {f"{p}label_share_1hop": np.full(len(rows), hops.LABEL_PRIOR),
                 f"{p}labelled_1hop": np.zeros(len(rows), np.int64)}  # fmt: skip
        if two:
            empty.update({f"{p}nb2_count": _row_counts(graph.two_hop, nodes),
                          f"{p}label_share_2hop": np.full(len(rows), hops.LABEL_PRIOR),
                          f"{p}labelled_2hop": np.zeros(len(rows), np.int64)})  # fmt: skip
        return empty
    codes = graph.nodes.get_indexer(labels[KEY])
    linked = codes >= 0
    timed = AS_OF in rows.columns and LABEL_TIME in labels.columns
    index = build_labels(labels[linked].reset_index(drop=True), codes[linked], timed)
    times = timestamps_ns(rows[AS_OF], "rows.as_of") if timed else None
    row_groups = node_groups = None
    if groups is not None and not timed:
        group_of = groups.astype("int64")
        row_groups = rows[KEY].map(group_of).fillna(-1).to_numpy(dtype="int64")
        node_groups = pd.Series(graph.nodes).map(group_of).fillna(-2).to_numpy(dtype="int64")
    identity = np.arange(len(graph.nodes))
    out = {}
    for tag, pattern in [("1hop", graph.adjacency)] + ([("2hop", graph.two_hop)] if two else []):
        share, labelled = hops.label_shares(
            pattern, nodes, times, row_groups, identity, index, node_groups
        )
        out[f"{p}label_share_{tag}"] = share
        out[f"{p}labelled_{tag}"] = labelled.astype(np.int64)
    if two:
        out[f"{p}nb2_count"] = _row_counts(graph.two_hop, nodes)
    return out


def _row_counts(pattern, nodes: np.ndarray) -> np.ndarray:
    return np.diff(pattern[nodes].indptr).astype(np.int64)


def out_of_fold_groups(store_ids: pd.Series, folds: int = 5) -> pd.Series:
    """A stable group (0..folds-1) per store from a hash of its id, for label features.

    The same store always lands in the same group, on any machine and run.
    """
    ids = pd.Series(store_ids.astype("str").unique())
    hashed = pd.util.hash_pandas_object(ids, index=False).to_numpy() % np.uint64(folds)
    return pd.Series(hashed.astype("int64"), index=ids.to_numpy())


def _naive_times(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``as_of`` (if any) as naive UTC timestamps."""
    if AS_OF not in frame.columns:
        return frame
    times = pd.to_datetime(frame[AS_OF], utc=True).dt.tz_localize(None)
    return frame.assign(**{AS_OF: times})


def match_feature_times(
    labels: pd.DataFrame, features: pd.DataFrame, columns: list[str], path: str | Path
) -> pd.DataFrame:
    """Each label with the store's latest feature row as of its label time (point in time).

    Args:
        labels: Checked labels with ``labeled_at``.
        features: The team's features with one row per store and ``as_of``.
        columns: Feature columns to take.
        path: The features file, for messages.

    Returns:
        The labels with the feature columns and ``FEATURE_TIME`` (the matched row's as_of).

    Raises:
        OwnDataError: Labels without a feature row at or before their time.
    """
    table = _naive_times(features[[KEY, AS_OF, *columns]]).rename(columns={AS_OF: FEATURE_TIME})
    table = table.sort_values(FEATURE_TIME, kind="stable")
    ordered = labels.reset_index(drop=True).assign(_row=lambda f: range(len(f)))
    ordered = ordered.sort_values(LABEL_TIME, kind="stable")
    matched = pd.merge_asof(
        ordered,
        table,
        left_on=LABEL_TIME,
        right_on=FEATURE_TIME,
        by=KEY,
        direction="backward",
        allow_exact_matches=True,
    )
    unmatched = matched.loc[matched[FEATURE_TIME].isna(), KEY]
    if len(unmatched):
        raise OwnDataError(
            f"features file {path}: {len(unmatched)} labels have no feature row at or before "
            f"their labeled_at (features must describe the store as it was when labelled), "
            f"e.g. stores {examples(unmatched)}"
        )
    return matched.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def scoring_table(
    features_path: str | Path,
    links_path: str | Path | None = None,
    labels_path: str | Path | None = None,
) -> pd.DataFrame:
    """A team's feature file ready to score, with link features from links and known labels.

    Link features are computed as in training. A table with rows per store and ``as_of``
    is scored on each store's latest row. When the links or labels carry times, the rows
    are scored as of just after the latest of them (the end of the data, like the end
    of a histories directory); labels without a time then count as known by then.

    Raises:
        OwnDataError: No ``store_id``, duplicate stores, or malformed links/labels.
    """
    features = read_table(features_path, "features")
    check_keys(features, "features", features_path)
    if AS_OF in features.columns:
        # Rows per store and time: a store is scored on its latest features.
        latest = _naive_times(features).sort_values(AS_OF, kind="stable")
        features = latest.drop_duplicates(KEY, keep="last").drop(columns=AS_OF)
        features = features.sort_values(KEY, kind="stable").reset_index(drop=True)
    if links_path is None:
        return features
    links = check_links(read_table(links_path, "links"), links_path)
    labels = None
    if labels_path is not None:
        labels = check_labels(read_table(labels_path, "labels"), None, labels_path)
    rows = features[[KEY]].copy()
    as_of = _end_of_data(links, labels)
    if as_of is not None:
        rows[AS_OF] = as_of
        if labels is not None and LABEL_TIME not in labels.columns:
            labels = labels.assign(**{LABEL_TIME: as_of - pd.Timedelta(microseconds=1)})
    columns = [c for c in features.columns if c not in RESERVED]
    spec = feature_spec_for(features, columns)
    linked, link_spec = own_link_features(rows, features, links, labels, spec)
    return pd.concat([features.reset_index(drop=True), linked[link_spec.names]], axis=1)


def _end_of_data(links: pd.DataFrame, labels: pd.DataFrame | None) -> pd.Timestamp | None:
    """One microsecond after the latest link or label time, or None if neither has times."""
    times = []
    if "linked_at" in links.columns:
        times.append(pd.to_datetime(links["linked_at"], utc=True).max())
    if labels is not None and LABEL_TIME in labels.columns:
        times.append(pd.to_datetime(labels[LABEL_TIME], utc=True).max())
    times = [t for t in times if pd.notna(t)]
    if not times:
        return None
    return max(times).tz_localize(None) + pd.Timedelta(microseconds=1)
