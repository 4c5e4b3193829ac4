"""Convert the Bitcoin-Alpha fraud graph of zhao-tong/Graph-Anomaly-Loss to own-data files.

Bitcoin-Alpha is a trading platform whose users rate each other (-10..+10). The repository
holds, for the 3,275 users who gave at least one rating ("raters"):

* ``alpha_features.pickle``: 3,275 x 148 float features of each rater's rating behaviour;
* ``alpha_labels.pickle``: -1 unlabelled, 0 benign, 1 fraudulent: the REV2 ground truth
  (Kumar et al., WSDM 2018: users the platform's founder rated as trustworthy or as
  fraudulent), 214 labelled raters of which 83 fraudulent;
* ``alpha_graph_u2p.pickle``: the 3,275 x 3,742 rater-to-rated-user matrix (24,174 ratings);
  the rated side has its own index, so a rater's and a rated user's ids cannot be matched.

Links between raters: two raters are linked when both rated the same user and that user was
rated by at most ``--max-raters`` raters (default 20). Like spotcheck's own derivation, which
ignores devices and IPs shared by too many stores, a counterparty rated by nearly everyone
links nobody. Nodes are ``ba00000`` .. ``ba03274``, features ``a000`` .. ``a147``.

Usage::

    python -m experiments.realdata.bitcoin_alpha --raw /work/scratch/realdata/raw \\
        --out /work/scratch/realdata/bitcoin_alpha/data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from experiments.realdata.common import (
    KEY,
    LABEL,
    LINKED,
    load_data_pickle,
    node_ids,
    sha256,
    undirected_pairs,
    write_converted,
)

FILES = {
    "features": "alpha_features.pickle",
    "labels": "alpha_labels.pickle",
    "ratings": "alpha_graph_u2p.pickle",
}
SHA256 = {
    "alpha_features.pickle": "e072d8983ce118ac95bdbf1ec9d3a77ba058319ae3fb8319c7d87964aac649cf",
    "alpha_labels.pickle": "78752a5678f29acc30df357c5d8608518cb8c8bd8277dac41637788ce596fd17",
    "alpha_graph_u2p.pickle": "986cc220c01a7548e84d7f08f4a47c812a1a137ab9482fb7f89fc2ac26ba04ab",
}
SOURCE = {
    "dataset": "bitcoin_alpha",
    "repository": "zhao-tong/Graph-Anomaly-Loss",
    "commit": "f3d886e63bae6106696ba6d51a91d3c1b6ef55fe",
    "added_in_commit": "443394bcc4d30df42ceb0f760804987192d181d9",
    "paths": [f"data/alpha/{name}" for name in FILES.values()],
    "sha256": SHA256,
    "licence": "MIT (the repository's LICENSE, Copyright (c) 2021 Tong Zhao)",
    "upstream": "ratings: SNAP soc-sign-bitcoin-alpha (Kumar et al., ICDM 2016); labels: REV2 "
    "ground truth (Kumar et al., WSDM 2018)",
}
DEFAULT_MAX_RATERS = 20


def co_rater_links(ratings: sp.spmatrix, max_raters: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of raters (``i < j``) who rated a common user rated by at most ``max_raters``."""
    rated = (sp.csc_matrix(ratings) != 0).astype(np.int64)
    raters_per_user = np.asarray(rated.sum(axis=0)).ravel()
    kept = rated[:, np.flatnonzero(raters_per_user <= max_raters)]
    shared = sp.triu(kept @ kept.T, k=1).tocoo()
    return undirected_pairs(shared.row, shared.col)


def convert(
    raw: Path, out: Path, max_raters: int = DEFAULT_MAX_RATERS, verify: bool = True
) -> dict[str, object]:
    """Read the three pickles in ``raw`` and write the converted files; return their summary.

    Args:
        raw: Directory holding the fetched ``alpha_*.pickle`` files.
        out: Output directory.
        max_raters: A rated user links its raters only if at most this many rated it.
        verify: Refuse files whose SHA-256 differs from the pinned ones.
    """
    for name in FILES.values():
        if verify and sha256(raw / name) != SHA256[name]:
            raise ValueError(f"{raw / name}: SHA-256 differs from the pinned {SHA256[name]}")
    values = np.asarray(load_data_pickle(raw / FILES["features"]), dtype=np.float64)
    labels = np.asarray(load_data_pickle(raw / FILES["labels"])).ravel()
    ratings = load_data_pickle(raw / FILES["ratings"])
    if not (len(values) == len(labels) == ratings.shape[0]):
        raise ValueError("features, labels and ratings disagree on the number of raters")
    ids = node_ids(len(values), "ba")
    features = pd.DataFrame(values, columns=[f"a{j:03d}" for j in range(values.shape[1])])
    features.insert(0, KEY, ids)
    labelled = np.flatnonzero(labels >= 0)
    all_labels = pd.DataFrame({KEY: ids[labelled], LABEL: labels[labelled].astype(np.int64)})
    low, high = co_rater_links(ratings, max_raters)
    links = pd.DataFrame({KEY: ids[low], LINKED: ids[high]})
    meta = {**SOURCE, "max_raters_per_rated_user": max_raters, "ratings": int(ratings.nnz)}
    return write_converted(out, features, all_labels, links, meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", type=Path, required=True, help="directory of alpha_*.pickle")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--max-raters", type=int, default=DEFAULT_MAX_RATERS)
    parser.add_argument(
        "--skip-checksum", action="store_true", help="accept files other than the pinned ones"
    )
    args = parser.parse_args(argv)
    summary = convert(args.raw, args.out, args.max_raters, verify=not args.skip_checksum)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
