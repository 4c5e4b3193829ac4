"""What every real-data converter shares: the converted layout, safe unpickling, a summary.

A converted data set is a directory with

* ``features.parquet``: ``store_id`` and the data set's node features, one row per node
  (every node, labelled or not) - the team's own feature table;
* ``all_labels.parquet``: ``store_id``, ``is_counterfeit`` (0/1) for every labelled node;
  the runner splits it and gives spotcheck only the non-test part;
* ``links.parquet``: ``store_id``, ``linked_store_id`` (each undirected link once);
* ``meta.json``: where the raw file came from (repository, commit, path, SHA-256) and counts.

Nothing here imports the project: converters only write the files a team would bring.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KEY = "store_id"
LINKED = "linked_store_id"
LABEL = "is_counterfeit"

# Globals a data pickle may name: numpy arrays and scipy sparse matrices, nothing callable
# beyond their reconstructors (a pickle can otherwise run any code when loaded).
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("scipy.sparse.csr", "csr_matrix"),
    ("scipy.sparse._csr", "csr_matrix"),
}


class _DataUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and scipy CSR matrices."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        with warnings.catch_warnings():
            # Old pickles name numpy.core / scipy.sparse.csr, deprecated aliases today.
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def load_data_pickle(path: Path) -> Any:
    """Load a pickle holding only numpy arrays / scipy CSR matrices (anything else refused)."""
    with path.open("rb") as handle:
        return _DataUnpickler(handle, encoding="latin1").load()


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, recorded so a re-fetch can be checked against it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def node_ids(n: int, prefix: str) -> np.ndarray:
    """String ids ``{prefix}{i:05d}`` for nodes ``0..n-1`` (stable, sortable)."""
    return np.array([f"{prefix}{i:05d}" for i in range(n)], dtype=object)


def undirected_pairs(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each undirected pair once (``i < j``), self-pairs dropped, sorted."""
    low, high = np.minimum(rows, cols), np.maximum(rows, cols)
    keep = low != high
    pairs = np.unique(np.stack([low[keep], high[keep]], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def write_converted(
    out: Path,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    links: pd.DataFrame,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Check and write one converted data set; return ``meta`` completed with counts.

    Args:
        out: Output directory (created).
        features: ``store_id`` plus feature columns, one row per node.
        labels: ``store_id``, ``is_counterfeit`` for the labelled nodes.
        links: ``store_id``, ``linked_store_id``.
        meta: Source description (repository, commit, path, licence, ...).

    Raises:
        ValueError: Duplicate ids, labels or links naming unknown nodes, labels not 0/1.
    """
    ids = features[KEY]
    if ids.duplicated().any():
        raise ValueError("duplicate store_id in features")
    known = set(ids)
    if not set(labels[KEY]) <= known:
        raise ValueError("labels name nodes absent from the features")
    if not (set(links[KEY]) | set(links[LINKED])) <= known:
        raise ValueError("links name nodes absent from the features")
    if not labels[LABEL].isin([0, 1]).all():
        raise ValueError("labels must be 0 or 1")
    out.mkdir(parents=True, exist_ok=True)
    features.to_parquet(out / "features.parquet", index=False)
    labels.to_parquet(out / "all_labels.parquet", index=False)
    links.to_parquet(out / "links.parquet", index=False)
    linked = pd.concat([links[KEY], links[LINKED]])
    meta = {
        **meta,
        "nodes": len(features),
        "feature_columns": features.shape[1] - 1,
        "links": len(links),
        "nodes_with_a_link": int(linked.nunique()),
        "labelled_nodes": len(labels),
        "positives": int(labels[LABEL].sum()),
        "positive_rate_among_labelled": round(float(labels[LABEL].mean()), 4),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta
