"""The extra (store, as-of) rows the builder needs for the neighbour aggregates."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.links.graph import build_graph, encode_ids, neighbour_edges
from features.links.inputs import check_id_families, check_ids, require_columns, timestamps_ns
from features.spec import AS_OF, KEY


def neighbour_snapshots(snapshots: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """Extra (store, as-of) rows the builder needs for neighbour aggregates.

    Args:
        snapshots: ``store_id`` and ``as_of`` rows (``as_of`` optional).
        links: As for :func:`add_link_features`.

    Returns:
        Distinct ``store_id``, ``as_of`` rows of direct neighbours (links valid at that as-of
        time) that are not already in ``snapshots``, sorted by ``as_of`` then ``store_id``.
    """
    require_columns(snapshots, "snapshots", [KEY])
    require_columns(links, "links", ["store_id", "linked_store_id"])
    check_ids(snapshots, "snapshots", "store_id")
    check_ids(links, "links", "store_id")
    check_ids(links, "links", "linked_store_id")
    timed = AS_OF in snapshots.columns
    keys = [KEY, AS_OF] if timed else [KEY]
    check_id_families(
        {
            "snapshots.store_id": snapshots[KEY],
            "links.store_id": links[KEY],
            "links.linked_store_id": links["linked_store_id"],
        }
    )
    if _covers_every_linked_store(snapshots, links, timed):
        return snapshots.iloc[:0][keys].reset_index(drop=True)
    (stores, src, dst), codes = encode_ids(snapshots[KEY], links[KEY], links["linked_store_id"])
    graph = build_graph(links, src, dst, (), len(codes))
    times = timestamps_ns(snapshots[AS_OF], "snapshots.as_of") if timed else None
    rows, edges = neighbour_edges(graph, stores, times)
    # Deduplicate and drop known rows on integer store codes: millions of link rows as
    # strings would cost seconds; only the (usually few) extra rows get their ids back.
    extra = pd.DataFrame({"code": graph.dst[edges]})
    known = pd.DataFrame({"code": stores})
    if timed:
        extra[AS_OF] = snapshots[AS_OF].to_numpy()[rows]
        known[AS_OF] = snapshots[AS_OF].to_numpy()
    code_keys = ["code", *keys[1:]]
    extra = extra.drop_duplicates()
    extra = extra[~_key_index(extra, code_keys).isin(_key_index(known, code_keys))]
    extra.insert(0, KEY, codes[extra.pop("code").to_numpy()])
    return extra.sort_values(keys[::-1], kind="stable").reset_index(drop=True)


def _covers_every_linked_store(snapshots: pd.DataFrame, links: pd.DataFrame, timed: bool) -> bool:
    """Whether the snapshots already have a row for every linked store at every as-of time.

    The usual case of a table of all stores at one as-of time: then no neighbour row can be
    missing, and the graph need not be built at all.
    """
    if timed and snapshots[AS_OF].nunique() > 1:
        return False
    # In Arrow: pandas' isin on Arrow-backed strings goes through Python lists (seconds).
    try:
        linked = pc.unique(pa.array(links["linked_store_id"]))
        present = pa.array(snapshots[KEY])
        if present.type != linked.type:
            present = present.cast(linked.type)
        covered = pc.all(pc.is_in(linked, value_set=present)).as_py()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False  # ids Arrow cannot type in one go: the general path handles them
    return covered is not False  # None: no links at all


def _key_index(frame: pd.DataFrame, columns: list[str]) -> pd.Index:
    """An index over one or more key columns (for fast membership tests)."""
    if len(columns) == 1:
        return pd.Index(frame[columns[0]])
    return pd.MultiIndex.from_frame(frame[columns])
