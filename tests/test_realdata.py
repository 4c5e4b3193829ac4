"""The real-data check's converters and runner, on tiny synthetic stand-ins of the raw files.

Nothing is downloaded and nothing imports ``experiments/``: each script runs as a command.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _facebook_like(path: Path, seed: int = 3) -> None:
    """A .mat like Facebook.mat: 240 users, 60 anomalies in small linked groups."""
    rng = np.random.default_rng(seed)
    n, positives = 240, 60
    label = np.zeros(n, np.int64)
    label[:positives] = 1
    rows = list(rng.integers(0, n, 600))
    cols = list(rng.integers(0, n, 600))
    for start in range(0, positives, 6):  # ten groups of six linked anomalies
        group = range(start, start + 6)
        rows += [i for i in group for j in group if i < j]
        cols += [j for i in group for j in group if i < j]
    adjacency = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.int32)
    attributes = (rng.random((n, 8)) < 0.3).astype(float)
    attributes[:, 0] = np.where(label == 1, rng.random(n) < 0.6, rng.random(n) < 0.2)
    scipy.io.savemat(
        path,
        {
            "Network": sp.csc_matrix(adjacency),
            "Attributes": sp.csc_matrix(attributes),
            "Label": label[None, :].astype(np.int32),
        },
    )


def test_bitcoin_alpha_converter_links_co_raters_and_keeps_labelled_raters(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    # Raters 0-3; rated users 0-2. User 0 is rated by 0, 1, 2 (over the cap of 2: no link),
    # user 1 by raters 1 and 3 (link), user 2 by rater 3 only.
    ratings = sp.csr_matrix(np.array([[5, 0, 0], [1, 2, 0], [3, 0, 0], [0, 1, 4]], float))
    labels = np.array([-1.0, 0.0, 1.0, 1.0])
    features = np.arange(12, dtype=float).reshape(4, 3)
    for name, value in (
        ("alpha_features.pickle", features),
        ("alpha_labels.pickle", labels),
        ("alpha_graph_u2p.pickle", ratings),
    ):
        (raw / name).write_bytes(pickle.dumps(value))
    out = tmp_path / "out"
    _run(
        "experiments.realdata.bitcoin_alpha", "--raw", str(raw), "--out", str(out),
        "--max-raters", "2", "--skip-checksum",
    )  # fmt: skip
    links = pd.read_parquet(out / "links.parquet")
    assert links.to_dict("records") == [{"store_id": "ba00001", "linked_store_id": "ba00003"}]
    assert pd.read_parquet(out / "all_labels.parquet").to_dict("records") == [
        {"store_id": "ba00001", "is_counterfeit": 0},
        {"store_id": "ba00002", "is_counterfeit": 1},
        {"store_id": "ba00003", "is_counterfeit": 1},
    ]
    assert list(pd.read_parquet(out / "features.parquet").columns) == [
        "store_id", "a000", "a001", "a002",
    ]  # fmt: skip


def test_converter_refuses_a_pickle_that_names_other_code(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "alpha_features.pickle").write_bytes(pickle.dumps(Path("x")))
    for name in ("alpha_labels.pickle", "alpha_graph_u2p.pickle"):
        (raw / name).write_bytes(pickle.dumps(np.zeros(1)))
    result = subprocess.run(
        [sys.executable, "-m", "experiments.realdata.bitcoin_alpha", "--raw", str(raw),
         "--out", str(tmp_path / "out"), "--skip-checksum"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "refusing to load pathlib" in result.stderr


@pytest.mark.slow
def test_runner_measures_spotcheck_and_lightgbm_and_records_a_refusal(tmp_path):
    _facebook_like(tmp_path / "synthetic.mat")
    data = tmp_path / "synthetic" / "data"
    _run(
        "experiments.realdata.facebook", "--raw", str(tmp_path / "synthetic.mat"),
        "--out", str(data), "--skip-checksum",
    )  # fmt: skip
    assert json.loads((data / "meta.json").read_text())["positives"] == 60

    out = tmp_path / "results.json"
    _run(
        "experiments.realdata.run", "--dataset", "synthetic", "--root", str(tmp_path),
        "--seeds", "0", "--trials", "1", "--methods", "spotcheck,lightgbm,lightgbm_links",
        "--out", str(out),
    )  # fmt: skip
    result = json.loads(out.read_text())
    run = result["runs"][0]
    assert run["test_nodes"] == 72 and run["test_positives"] == 18
    for method in ("spotcheck", "lightgbm", "lightgbm_links"):
        measured = run["methods"][method]
        assert measured["status"] == "ok", measured
        assert 0.0 <= measured["roc_auc"] <= 1.0 and 0.0 <= measured["pr_auc"] <= 1.0
    links = run["links"]
    assert links["numeric_feature_columns"] == 8
    # Every numeric column: mean/max/min/std over 1 and 2 hops, and a GCN mean.
    assert links["aggregated_feature_columns"] == 8
    assert links["neighbour_aggregate_columns"] == 8 * 4 * 2
    assert links["gcn_columns"] == 8
    assert links["ring_size"]["max"] >= 1
    assert result["summary"]["spotcheck"]["seeds_ok"] == 1

    refused = tmp_path / "refused.json"
    _run(
        "experiments.realdata.run", "--dataset", "synthetic", "--root", str(tmp_path),
        "--seeds", "0", "--methods", "spotcheck_nolinks", "--min-positives", "100",
        "--out", str(refused),
    )  # fmt: skip
    measured = json.loads(refused.read_text())["runs"][0]["methods"]["spotcheck_nolinks"]
    assert measured["status"] == "failed" and measured["exit_code"] == 1
    assert measured["step"] == "train" and measured["error"].startswith("error: ")
