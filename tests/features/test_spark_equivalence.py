"""Spark (``local[2]``) against DuckDB, the reference: the same features, links and rings.

A small synthetic marketplace, store features at two as-of times and at every label's time
(the training rows), every value compared; the links derived in Spark SQL compared row by
row; the distributed connected components compared with SciPy's on the links and on graphs
built to be hard for them (a long chain, a star, random sparse graphs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from features.contract.histories import open_histories
from features.links.derive import login_links
from features.links.spark import connected_components, login_links_spark
from features.settings import duckdb_connection
from features.spark_session import spark_session
from features.spec import AS_OF, KEY
from features.store.engine import compute_store_features
from features.store.spark_engine import compute_store_features_spark, open_histories_spark
from features.synth.generate import generate_marketplace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def marketplace(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("spark") / "histories"
    generate_marketplace(out, stores=1500, seed=5)
    return out


@pytest.fixture(scope="module")
def spark(marketplace):
    session = spark_session("local[2]")
    open_histories_spark(session, marketplace)
    yield session


def _keys(marketplace) -> pd.DataFrame:
    """Every store at two times, and every labelled store at its label's time."""
    con = open_histories(marketplace, duckdb_connection(), tables=("stores", "labels"))
    stores = con.execute("SELECT store_id FROM stores").df()[KEY]
    labels = con.execute("SELECT store_id, labeled_at AS as_of FROM labels").df()
    times = [pd.Timestamp("2025-06-01"), pd.Timestamp("2026-03-15 12:00:00")]
    keys = pd.concat([*(pd.DataFrame({KEY: stores, AS_OF: t}) for t in times), labels])
    keys[KEY] = keys[KEY].astype(str)
    keys[AS_OF] = pd.to_datetime(keys[AS_OF]).astype("datetime64[us]")
    return keys.drop_duplicates().sort_values([KEY, AS_OF]).reset_index(drop=True)


def _assert_frames_equal(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    """Every column equal; floats to 1e-9 relative, missing where missing."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    different = []
    for column in expected.columns:
        a, b = expected[column], got[column]
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            a = pd.to_numeric(a, errors="coerce").to_numpy(dtype="float64")
            b = pd.to_numeric(b, errors="coerce").to_numpy(dtype="float64")
            same = np.isclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)
        else:
            same = (a.astype(object).where(a.notna(), None).to_numpy()
                    == b.astype(object).where(b.notna(), None).to_numpy())  # fmt: skip
        if not same.all():
            different.append(f"{column}: {int((~same).sum())} rows")
    assert not different, different


def test_store_features_are_the_same_on_spark(marketplace, spark):
    keys = _keys(marketplace)
    con = open_histories(marketplace, duckdb_connection())
    expected = compute_store_features(con, keys)
    got = compute_store_features_spark(spark, spark.createDataFrame(keys)).toPandas()
    got = got.sort_values([KEY, AS_OF]).reset_index(drop=True)
    got[AS_OF] = got[AS_OF].astype("datetime64[us]")
    assert len(expected) == len(keys) > 3000
    # Most features vary: the comparison is not between columns of zeros.
    assert (expected.nunique() > 1).sum() > 80
    _assert_frames_equal(expected.reset_index(drop=True), got)


def test_links_are_the_same_on_spark(marketplace, spark):
    con = open_histories(marketplace, duckdb_connection(), tables=("logins",))
    columns = [KEY, "linked_store_id", "kind", "linked_at", "unlinked_at"]
    expected = login_links(con)[columns].sort_values(columns).reset_index(drop=True)
    got = login_links_spark(spark).toPandas()[columns].sort_values(columns)
    got = got.reset_index(drop=True)
    for column in ("linked_at", "unlinked_at"):
        expected[column] = pd.to_datetime(expected[column]).astype("datetime64[us]")
        got[column] = pd.to_datetime(got[column]).astype("datetime64[us]")
    assert len(expected) > 1000 and expected["unlinked_at"].notna().any()
    _assert_frames_equal(expected, got)


def _scipy_components(edges: pd.DataFrame) -> pd.DataFrame:
    vertices = pd.Index(sorted(set(edges["src"]) | set(edges["dst"])))
    a, b = vertices.get_indexer(edges["src"]), vertices.get_indexer(edges["dst"])
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(vertices), len(vertices)))
    _, label = scipy_components(graph, directed=False)
    frame = pd.DataFrame({"vertex": vertices, "label": label})
    frame["component"] = frame.groupby("label")["vertex"].transform("min")
    return frame[["vertex", "component"]]


def _graphs(spark) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    chain = np.arange(400)
    sparse = rng.integers(0, 3000, size=(2000, 2))
    links = login_links_spark(spark).select("store_id", "linked_store_id").toPandas()
    return {
        "links": links.set_axis(["src", "dst"], axis=1),
        # A path numbered so the smallest vertex is in the middle: the slowest shape for
        # label propagation, log rounds for the star operations.
        "chain": pd.DataFrame(
            {"src": np.r_[chain[::2], chain[1::2]][:-1], "dst": np.r_[chain[::2], chain[1::2]][1:]}
        ),  # fmt: skip
        "star": pd.DataFrame({"src": 7, "dst": np.arange(100)}),
        "random": pd.DataFrame({"src": sparse[:, 0], "dst": sparse[:, 1]}),
    }


def test_connected_components_match_scipy(spark):
    for name, edges in _graphs(spark).items():
        expected = _scipy_components(edges).sort_values("vertex").reset_index(drop=True)
        got = connected_components(spark.createDataFrame(edges)).toPandas()
        got = got.sort_values("vertex").reset_index(drop=True)
        assert got["vertex"].tolist() == expected["vertex"].tolist(), name
        assert got["component"].tolist() == expected["component"].tolist(), name
        assert expected["component"].nunique() > (1 if name in ("links", "random") else 0)
