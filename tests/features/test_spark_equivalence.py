"""Spark (``local[2]``) against DuckDB, the reference: the same features, links and rings.

A small synthetic marketplace: the whole feature table (store and link-graph features) for
every store at two as-of times, and the training rows (one per label at its own time: rings
by search instead of components) through ``spotcheck features --engine spark``, every value
compared; ring features under a small cap; the links derived in Spark SQL compared row by
row; the distributed connected components compared with SciPy's on graphs built to be hard
for them (a long chain numbered from the middle, a random sparse graph).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from features.build import build_training_table, features_for_keys, open_store_keys, spec_path
from features.contract.histories import open_histories
from features.links import add_link_features
from features.links.derive import login_links
from features.links.spark import (
    MAX_COMPONENT_TIMES,
    connected_components,
    link_features_spark,
    login_links_spark,
)
from features.settings import duckdb_connection
from features.spark_build import features_for_keys_spark
from features.spark_session import spark_session
from features.spec import AS_OF, KEY, FeatureSpec
from features.store.spark_engine import open_histories_spark
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
    session.stop()


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


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values([KEY, AS_OF]).reset_index(drop=True)
    return frame.assign(**{AS_OF: frame[AS_OF].astype("datetime64[us]")})


def test_training_rows_are_the_same_through_the_cli(marketplace, tmp_path, cli):
    out = tmp_path / "training"
    result = cli("features", "--engine", "spark", "--training", "--histories", marketplace,
                 "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert spec_path(out).is_file() and len(list(out.glob("*.parquet"))) >= 1
    expected, spec = build_training_table(marketplace)
    assert FeatureSpec.from_json(spec_path(out).read_text()).hash == spec.hash
    # One as-of time per label: the rings come from the search, not components.
    assert len(expected) > 50 and expected[AS_OF].nunique() > MAX_COMPONENT_TIMES
    _assert_frames_equal(_sorted(expected), _sorted(pd.read_parquet(out)))


def test_the_feature_table_at_two_times_is_the_same_on_spark(marketplace, spark):
    con = open_histories(marketplace, duckdb_connection(), tables=("stores",))
    times = [pd.Timestamp("2025-06-01"), pd.Timestamp("2026-03-15 12:00:00")]
    keys = pd.concat([
        open_store_keys(con, when) for when in times
    ]).sort_values([KEY, AS_OF], ignore_index=True)  # fmt: skip
    expected, spec = features_for_keys(marketplace, keys)
    table, spark_spec = features_for_keys_spark(spark, marketplace, spark.createDataFrame(keys))
    assert spark_spec.hash == spec.hash
    assert expected[AS_OF].nunique() == 2
    # The link features are not all zero: rings, known counterfeit neighbours, aggregates.
    for name in ("link_ring_size", "link_known_counterfeit", "link_ring_known_counterfeit"):
        assert expected[name].fillna(0).gt(0).sum() > 20, name
    assert (expected.nunique() > 1).sum() > 100
    _assert_frames_equal(_sorted(expected), _sorted(table.toPandas()))


def test_ring_features_under_a_small_cap(marketplace, spark):
    con = open_histories(marketplace, duckdb_connection(), tables=("stores", "logins", "labels"))
    links = login_links(con)
    labels = con.execute("SELECT store_id, labeled_at, is_counterfeit FROM labels").df()
    stores = con.execute("SELECT store_id FROM stores ORDER BY store_id").df()[KEY]
    rows = pd.DataFrame({KEY: stores.astype(str), AS_OF: pd.Timestamp("2026-01-01")})
    rows[AS_OF] = rows[AS_OF].astype("datetime64[us]")
    expected, _ = add_link_features(rows, links, labels, neighbour_columns=[], max_ring_size=3)
    got = link_features_spark(
        spark.createDataFrame(rows), login_links_spark(spark), spark.table("labels"), (),
        max_ring_size=3,
    ).toPandas()  # fmt: skip
    # Rings past the cap: the cap and no count, in both.
    assert (expected["link_ring_size"] == 3).sum() > 10
    assert expected["link_ring_known_counterfeit"].isna().sum() > 10
    _assert_frames_equal(_sorted(expected), _sorted(got))


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


def _graphs() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    chain = np.arange(400)
    sparse = rng.integers(0, 3000, size=(2000, 2))
    order = np.r_[chain[::2], chain[1::2]]
    return {
        # A path numbered so the smallest vertex is in the middle: the slowest shape for
        # label propagation, log rounds for the star operations.
        "chain": pd.DataFrame({"src": order[:-1], "dst": order[1:]}),
        # Many components of many shapes, self-loops and repeated edges among them.
        "random": pd.DataFrame({"src": sparse[:, 0], "dst": sparse[:, 1]}),
    }


def test_connected_components_match_scipy(spark):
    for name, edges in _graphs().items():
        expected = _scipy_components(edges).sort_values("vertex").reset_index(drop=True)
        got = connected_components(spark.createDataFrame(edges)).toPandas()
        got = got.sort_values("vertex").reset_index(drop=True)
        assert got["vertex"].tolist() == expected["vertex"].tolist(), name
        assert got["component"].tolist() == expected["component"].tolist(), name
        assert expected["component"].nunique() == (1 if name == "chain" else 296), name
