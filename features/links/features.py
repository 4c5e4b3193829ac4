"""The link-graph features of a feature table: degrees, known labels, rings, neighbours.

:func:`add_link_features` computes them for any table; :func:`link_graph_part` computes
everything but the neighbour aggregates from the rows' keys alone, so the builder can run it
while the store features are still being computed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from features.links import rings
from features.links.derive import LINK_KINDS
from features.links.graph import (
    NEVER,
    Graph,
    LabelIndex,
    Neighbours,
    build_graph,
    build_labels,
    encode_ids,
    latest_labels,
    neighbours,
    row_lookup,
)
from features.links.inputs import LinkGraphError, check_inputs, check_ring_cap, timestamps_ns
from features.links.rings import DEFAULT_MAX_RING_SIZE
from features.links.spec import LINK_PREFIX, RECENT_WINDOW, LinkOptions, link_spec
from features.spec import AS_OF, KEY, FeatureSpec

# Default cap on how many numeric columns get neighbour mean/max aggregates.
MAX_NEIGHBOUR_COLUMNS = 16


def add_link_features(
    features: pd.DataFrame,
    links: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    neighbour_columns: Sequence[str] | None = None,
    *,
    prefix: str = LINK_PREFIX,
    kinds: Sequence[str] = LINK_KINDS,
    max_ring_size: int = DEFAULT_MAX_RING_SIZE,
    base_spec: FeatureSpec | None = None,
    graph_part: LinkGraphPart | None = None,
) -> tuple[pd.DataFrame, FeatureSpec]:
    """Append link-graph features to a feature table.

    Works on any table with one row per store (and optional as-of time): the project's own
    store features or a team's existing ones.

    Point in time: when ``features`` has ``as_of``, a link counts for a row only if
    ``linked_at < as_of`` and (``unlinked_at`` is missing or ``>= as_of``), and a label only
    if ``labeled_at < as_of`` (a store's latest such label is used; on equal times a
    counterfeit label wins). Without ``as_of``, every link and label counts. The row's own
    store's label never counts.

    Args:
        features: ``store_id``, optional ``as_of`` (timestamp), other columns. Numeric ones
            may be aggregated over neighbours; all columns pass through untouched. At most
            one row per (``store_id``, ``as_of``).
        links: ``store_id``, ``linked_store_id``, optional ``kind``, optional ``linked_at``
            and ``unlinked_at`` (missing: never). Undirected; self-links are dropped; links to
            stores absent from ``features`` still count. Without ``linked_at`` a link counts
            at every as-of time.
        labels: ``store_id``, ``is_counterfeit`` (0/1), ``labeled_at`` (required when
            ``features`` has ``as_of``). None: no label features.
        neighbour_columns: Numeric columns whose mean and max over the linked stores are
            added, using each linked store's row with the same ``as_of`` (linked stores
            without one are ignored). Default: the first ``MAX_NEIGHBOUR_COLUMNS`` numeric
            columns. Pass ``[]`` for none.
        prefix: Prefix of every appended column.
        kinds: Link kinds that get their own columns (when ``links`` has ``kind``); links of
            other kinds count in the totals only.
        max_ring_size: Cap on the ring (connected component) size; rings past it report the
            cap and no ring label count.
        base_spec: Spec of ``features``' columns; neighbour aggregates then inherit each
            column's description and risk direction.
        graph_part: :func:`link_graph_part` of the same rows, links, labels and options,
            computed ahead (e.g. while the features were built).

    Returns:
        ``features`` with the link columns appended (same rows, order and index), and the
        FeatureSpec of the appended columns only (group ``link_graph``).

    Raises:
        LinkGraphError: On missing columns, missing or mismatched ids, unreadable or missing
            timestamps, labels that are not 0/1, duplicate (store_id, as_of) rows, or a
            ``graph_part`` computed for other inputs.
    """
    check_inputs(features, links, labels)
    columns = _pick_neighbour_columns(features, neighbour_columns, prefix)
    options = _graph_options(features, links, labels, prefix, kinds, max_ring_size, columns)
    spec = link_spec(options, base_spec)
    clash = [name for name in spec.names if name in features.columns]
    if clash:
        raise LinkGraphError(
            f"features already has column(s) {', '.join(clash[:5])}; pass another prefix"
        )
    values = _compute(features, links, labels, options, graph_part)
    appended = pd.DataFrame(values, index=features.index)[spec.names]
    return pd.concat([features, appended], axis=1), spec


def _pick_neighbour_columns(
    features: pd.DataFrame, requested: Sequence[str] | None, prefix: str
) -> tuple[str, ...]:
    """Validate requested neighbour columns, or choose the default numeric ones."""

    def numeric(column: str) -> bool:
        dtype = features[column].dtype
        return pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype)

    if requested is None:
        candidates = [
            c
            for c in features.columns
            if c not in (KEY, AS_OF) and not str(c).startswith(prefix) and numeric(c)
        ]
        return tuple(candidates[:MAX_NEIGHBOUR_COLUMNS])
    requested = list(requested)
    missing = [c for c in requested if c not in features.columns]
    if missing:
        raise LinkGraphError(f"neighbour_columns: not in features: {', '.join(missing)}")
    wrong = [c for c in requested if c in (KEY, AS_OF) or not numeric(c)]
    if wrong:
        raise LinkGraphError(f"neighbour_columns: not numeric features: {', '.join(wrong)}")
    return tuple(dict.fromkeys(requested))


@dataclass(frozen=True)
class LinkGraphPart:
    """The link features that need only the rows' keys: all but the neighbour aggregates.

    Made by :func:`link_graph_part`, possibly while the store features are still being
    computed, and handed to :func:`add_link_features`, which uses it for the same rows,
    links, labels and options (equal copies included) and refuses it for any others.

    Attributes:
        options: The options it was computed with (without neighbour columns).
        links: The links it was computed from.
        labels: The labels it was computed from, or None.
        store_ids: The rows' store ids in order, or None if Arrow cannot type them.
        times: The rows' as-of times in ns since the epoch, or None without ``as_of``.
        values: The computed columns, by name.
        stores: The rows' store codes in the graph's code space.
        near: The links valid at each row's as-of time.
    """

    options: LinkOptions
    links: pd.DataFrame
    labels: pd.DataFrame | None
    store_ids: pa.ChunkedArray | None
    times: np.ndarray | None
    values: dict[str, np.ndarray]
    stores: np.ndarray
    near: Neighbours

    def mismatch(
        self,
        features: pd.DataFrame,
        links: pd.DataFrame,
        labels: pd.DataFrame | None,
        options: LinkOptions,
    ) -> str | None:
        """Why this part does not fit these inputs, or None when it does.

        Inputs fit when they are equal in content (a copy fits), not only the same objects.
        """
        if not _same_frame(self.links, links):
            return "it was made from other links"
        if not _same_frame(self.labels, labels):
            return "it was made from other labels"
        if self.options != dataclasses.replace(options, neighbour_columns=()):
            return "it was made with other options"
        if (AS_OF in features.columns) != (self.times is not None):
            return "it was made for rows with" + ("out" if self.times is None else "") + " as_of"
        if self.store_ids is None or len(self.store_ids) != len(features):
            return "it was made for other rows"
        if self.times is not None and not np.array_equal(
            self.times, timestamps_ns(features[AS_OF], "features.as_of")
        ):
            return "it was made for rows at other as-of times"
        ids = _arrow_ids(features[KEY])
        if ids is None or not ids.equals(self.store_ids):
            return "it was made for other stores or another row order"
        return None


def _same_frame(made_from: pd.DataFrame | None, given: pd.DataFrame | None) -> bool:
    """Whether two input tables are the same object or equal in content."""
    if made_from is given:
        return True
    if made_from is None or given is None:
        return False
    return made_from.equals(given)


def link_graph_part(
    keys: pd.DataFrame,
    links: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    *,
    prefix: str = LINK_PREFIX,
    kinds: Sequence[str] = LINK_KINDS,
    max_ring_size: int = DEFAULT_MAX_RING_SIZE,
) -> LinkGraphPart:
    """The link features of ``keys``' rows that need no feature values (see ``LinkGraphPart``).

    Args:
        keys: ``store_id`` and optional ``as_of``: the rows the feature table will have, in
            its order.
        links: As for :func:`add_link_features`.
        labels: As for :func:`add_link_features`.
        prefix: As for :func:`add_link_features`.
        kinds: As for :func:`add_link_features`.
        max_ring_size: As for :func:`add_link_features`.

    Raises:
        LinkGraphError: As :func:`add_link_features` does for bad keys, links or labels.
    """
    key_columns = [c for c in (KEY, AS_OF) if c in keys.columns]
    rows = keys[key_columns]
    check_inputs(rows, links, labels)
    options = _graph_options(rows, links, labels, prefix, kinds, max_ring_size, ())
    return _graph_part(rows, links, labels, options)


def _graph_options(
    features: pd.DataFrame,
    links: pd.DataFrame,
    labels: pd.DataFrame | None,
    prefix: str,
    kinds: Sequence[str],
    max_ring_size: int,
    neighbour_columns: tuple[str, ...],
) -> LinkOptions:
    """The options the inputs' columns and the arguments decide."""
    return LinkOptions(
        prefix=prefix,
        kinds=tuple(kinds) if "kind" in links.columns else None,
        recent=AS_OF in features.columns and "linked_at" in links.columns,
        labels=labels is not None,
        neighbour_columns=neighbour_columns,
        max_ring_size=check_ring_cap(max_ring_size),
    )


def _compute(
    features: pd.DataFrame,
    links: pd.DataFrame,
    labels: pd.DataFrame | None,
    options: LinkOptions,
    graph_part: LinkGraphPart | None = None,
) -> dict[str, np.ndarray]:
    """All link feature values, keyed by column name.

    Raises:
        LinkGraphError: ``graph_part`` was computed for other inputs.
    """
    part = graph_part
    if part is None:
        part = _graph_part(features, links, labels, options)
    else:
        reason = part.mismatch(features, links, labels, options)
        if reason is not None:
            raise LinkGraphError(f"graph_part does not fit these inputs: {reason}")
    out = dict(part.values)
    out.update(_neighbour_aggregates(features, part.stores, part.times, part.near, options))
    return out


def _graph_part(
    features: pd.DataFrame,
    links: pd.DataFrame,
    labels: pd.DataFrame | None,
    options: LinkOptions,
) -> LinkGraphPart:
    """Everything but the neighbour aggregates, for ``features``' rows."""
    ids = [features[KEY], links[KEY], links["linked_store_id"]]
    if labels is not None:
        ids.append(labels[KEY])
    codes, uniques = encode_ids(*ids)
    graph = build_graph(links, codes[1], codes[2], options.kinds or (), len(uniques))
    label_index = (
        build_labels(labels, codes[3], "labeled_at" in labels.columns)
        if labels is not None
        else None
    )
    stores = codes[0]
    times = timestamps_ns(features[AS_OF], "features.as_of") if AS_OF in features.columns else None

    near = neighbours(graph, stores, times)
    out = _degree_features(graph, near, times, options)
    ring = rings.ring_stats(graph, label_index, stores, times, options.max_ring_size)
    out[f"{options.prefix}ring_size"] = ring.size
    if label_index is not None:
        out.update(_label_features(graph, label_index, near, times, options))
        out[f"{options.prefix}ring_known_counterfeit"] = ring.counterfeit
    return LinkGraphPart(
        options=dataclasses.replace(options, neighbour_columns=()),
        links=links,
        labels=labels,
        store_ids=_arrow_ids(features[KEY]),
        times=times,
        values=out,
        stores=stores,
        near=near,
    )


def _arrow_ids(ids: pd.Series) -> pa.ChunkedArray | None:
    """Store ids in Arrow (to compare row keys fast), or None if Arrow cannot type them."""
    try:
        values = pa.array(ids)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def _count_pairs(near: Neighbours, edge_mask: np.ndarray) -> np.ndarray:
    """Per row, distinct linked stores reached through the links selected by ``edge_mask``."""
    hit = np.zeros(len(near.pair_rows), bool)
    hit[near.pair_of_edge[edge_mask]] = True
    return np.bincount(near.pair_rows[hit], minlength=near.n_rows)


def _degree_features(
    graph: Graph, near: Neighbours, times: np.ndarray | None, options: LinkOptions
) -> dict[str, np.ndarray]:
    """Linked-store counts: total, per kind, and newly linked in the recent window."""
    p = options.prefix
    out = {f"{p}linked_stores": np.bincount(near.pair_rows, minlength=near.n_rows)}
    edge_kind = graph.kind[near.edges]
    for k, kind in enumerate(options.kinds or ()):
        out[f"{p}{kind}_stores"] = _count_pairs(near, edge_kind == k)
    if options.recent and times is not None:
        # A store is newly linked if its earliest still-valid link began in the window.
        first = np.full(len(near.pair_rows), NEVER, np.int64)
        np.minimum.at(first, near.pair_of_edge, graph.start[near.edges])
        recent = first >= times[near.pair_rows] - RECENT_WINDOW.value
        out[f"{p}new_linked_stores_30d"] = np.bincount(
            near.pair_rows[recent], minlength=near.n_rows
        )
    return out


def _label_features(
    graph: Graph,
    labels: LabelIndex,
    near: Neighbours,
    times: np.ndarray | None,
    options: LinkOptions,
) -> dict[str, np.ndarray]:
    """Counts of linked stores known counterfeit / genuine before each row's as-of time."""
    p, n_rows = options.prefix, near.n_rows
    pair_times = None if times is None else times[near.pair_rows]
    label = latest_labels(labels, near.pair_nodes, pair_times)
    counterfeit = np.bincount(near.pair_rows, weights=label == 1, minlength=n_rows)
    genuine = np.bincount(near.pair_rows, weights=label == 0, minlength=n_rows)
    labelled = counterfeit + genuine
    # Among the labelled neighbours: unlabelled ones say nothing either way.
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(labelled > 0, counterfeit / np.maximum(labelled, 1), np.nan)
    out = {
        f"{p}known_counterfeit": counterfeit.astype(np.int64),
        f"{p}known_counterfeit_share": share,
        f"{p}known_genuine": genuine.astype(np.int64),
        f"{p}labeled_linked_stores": labelled.astype(np.int64),
    }
    edge_counterfeit = label[near.pair_of_edge] == 1
    edge_kind = graph.kind[near.edges]
    for k, kind in enumerate(options.kinds or ()):
        out[f"{p}{kind}_known_counterfeit"] = _count_pairs(
            near, (edge_kind == k) & edge_counterfeit
        )
    return out


def _neighbour_aggregates(
    features: pd.DataFrame,
    stores: np.ndarray,
    times: np.ndarray | None,
    near: Neighbours,
    options: LinkOptions,
) -> dict[str, np.ndarray]:
    """Mean and max of the neighbour columns over linked stores' same-as-of rows."""
    if not options.neighbour_columns:
        return {}
    n_rows = near.n_rows
    pair_times = None if times is None else times[near.pair_rows]
    source = row_lookup(stores, times, near.pair_nodes, pair_times)
    found = source >= 0
    pair_rows, source = near.pair_rows[found], source[found]
    starts = np.flatnonzero(np.r_[True, np.diff(pair_rows) != 0]) if len(pair_rows) else []
    owners = pair_rows[starts] if len(pair_rows) else np.array([], np.int64)
    out = {}
    for column in options.neighbour_columns:
        values = features[column].to_numpy(dtype=float, na_value=np.nan)[source]
        present = ~np.isnan(values)
        total = np.bincount(pair_rows, weights=np.where(present, values, 0.0), minlength=n_rows)
        count = np.bincount(pair_rows, weights=present, minlength=n_rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        maximum = np.full(n_rows, np.nan)
        if len(pair_rows):
            maximum[owners] = np.fmax.reduceat(values, starts)
        out[f"{options.prefix}nb_mean_{column}"] = mean
        out[f"{options.prefix}nb_max_{column}"] = maximum
    return out
