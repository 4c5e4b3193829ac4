"""Convert the Facebook anomaly graph (``Facebook.mat`` of mala-lab/TAM-master) to own-data files.

The ``.mat`` file holds ``Network`` (1,081 x 1,081 symmetric 0/1 adjacency), ``Attributes``
(1,081 x 576 sparse binary node attributes) and ``Label`` (1 = anomalous user, 25 of 1,081).
Every node is labelled. Features become columns ``f000`` .. ``f575`` (int64 0/1) of nodes
``fb00000`` .. ``fb01080``; each undirected edge becomes one link (no kinds).

Usage::

    python -m experiments.realdata.facebook --raw /work/scratch/realdata/raw/Facebook.mat \\
        --out /work/scratch/realdata/facebook/data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from experiments.realdata.common import (
    KEY,
    LABEL,
    LINKED,
    node_ids,
    sha256,
    undirected_pairs,
    write_converted,
)

SOURCE = {
    "dataset": "facebook",
    "repository": "mala-lab/TAM-master",
    "commit": "e82ead0584b9b807d4db56a9ffdf89ff94c74dfa",
    "added_in_commit": "cdabdfa23915db8959e2fc55c62b93e380b88e92",
    "path": "data/Facebook.mat",
    "git_blob": "3880e75ac75a77c1397c85c0653565c3d5918bec",
    "sha256": "606d8cce2f9a9d2829244f5691d1abf0c3a5e0f28a2ade25a7ca7df304184163",
    "licence": "none stated in the repository",
    "upstream": "TAM's README: 'Facebook is obtained from https://github.com/zhiming-xu/conad' "
    "(CONAD, Xu et al., PAKDD 2022)",
}


def convert(raw: Path, out: Path, verify: bool = True) -> dict[str, object]:
    """Read ``Facebook.mat`` and write the converted files; return their summary.

    Args:
        raw: The fetched ``Facebook.mat``.
        out: Output directory.
        verify: Refuse a file whose SHA-256 differs from the pinned one.
    """
    digest = sha256(raw)
    if verify and digest != SOURCE["sha256"]:
        raise ValueError(f"{raw}: SHA-256 {digest} is not the pinned {SOURCE['sha256']}")
    mat = scipy.io.loadmat(raw)
    adjacency = mat["Network"].tocoo()
    attributes = mat["Attributes"].toarray()
    labels = np.asarray(mat["Label"]).ravel().astype(np.int64)
    ids = node_ids(attributes.shape[0], "fb")
    columns = [f"f{j:03d}" for j in range(attributes.shape[1])]
    features = pd.DataFrame(attributes.astype(np.int64), columns=columns)
    features.insert(0, KEY, ids)
    low, high = undirected_pairs(adjacency.row, adjacency.col)
    links = pd.DataFrame({KEY: ids[low], LINKED: ids[high]})
    all_labels = pd.DataFrame({KEY: ids, LABEL: labels})
    return write_converted(out, features, all_labels, links, dict(SOURCE))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", type=Path, required=True, help="Facebook.mat")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--skip-checksum", action="store_true", help="accept a file other than the pinned one"
    )
    args = parser.parse_args(argv)
    print(json.dumps(convert(args.raw, args.out, verify=not args.skip_checksum), indent=1))


if __name__ == "__main__":
    main()
