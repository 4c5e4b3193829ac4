"""``spotcheck score --engine spark``: the same stores, scores and reasons as local scoring."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from serving.batch import OUTPUT_COLUMNS

pytestmark = pytest.mark.slow

MASTER = "local[2]"


@pytest.fixture
def spark():
    """A session with several shuffle partitions that AQE may not merge, stopped after."""
    from features.spark_session import spark_session

    started = time.perf_counter()
    session = spark_session(
        MASTER,
        shuffle_partitions=4,
        conf={
            "spark.sql.adaptive.coalescePartitions.enabled": "false",
            "spark.ui.enabled": "false",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    print(f"Spark session started in {time.perf_counter() - started:.1f} s")
    yield session
    session.stop()


def test_spark_ranks_like_local_across_partitions(spark, tmp_path):
    from serving import batch
    from serving.spark_scoring import _write_ranked

    rng = np.random.default_rng(5)
    n = 1000
    # Few distinct scores and raw scores, so every tie-break is needed.
    frame = pd.DataFrame(
        {
            "store_id": [f"s{i:04d}" for i in rng.permutation(n)],
            "score": rng.choice([0.1, 0.5, 0.9], n),
            "raw_score": rng.choice([-1.0, 0.0, 1.0], n),
        }
    )
    for name in OUTPUT_COLUMNS:
        if name not in frame.columns and name != "rank":
            frame[name] = "x" if name != "base_value" else 0.0
    scored = spark.createDataFrame(frame.drop(columns="rank", errors="ignore")).repartition(3)

    written = _write_ranked(spark, scored, tmp_path / "ranked", top=5)

    assert written.rows == n
    ranked = pd.read_parquet(tmp_path / "ranked").sort_values("rank", ignore_index=True)
    expected = batch.rank(frame)
    assert ranked["rank"].tolist() == list(range(1, n + 1))
    assert ranked["store_id"].tolist() == expected["store_id"].tolist()
    assert written.head["store_id"].tolist() == expected["store_id"].head(5).tolist()
    assert len(list((tmp_path / "ranked").glob("part-*.parquet"))) > 1  # partitions did split


def test_spark_scores_equal_local_scores(histories_model, snapshot, cli, tmp_path):
    _, name = histories_model
    uri = f"models:/{name}/1"
    local_out, spark_out = tmp_path / "local.parquet", tmp_path / "spark.parquet"
    local = cli("score", "--features", snapshot, "--model", uri, "--out", local_out, "--top", 0)
    assert local.exit_code == 0, local.stderr

    started = time.perf_counter()
    result = cli(
        "score", "--features", snapshot, "--model", uri, "--out", spark_out,
        "--engine", "spark", "--spark-master", MASTER, "--top", 3,
    )  # fmt: skip
    print(f"spotcheck score --engine spark: {time.perf_counter() - started:.1f} s")
    print(result.stderr)
    assert result.exit_code == 0, result.stderr or result.output

    assert spark_out.is_dir()
    assert not list(tmp_path.glob(".*.tmp*")), "temporary output left behind"
    expected = pd.read_parquet(local_out)
    got = pd.read_parquet(spark_out).sort_values("rank", ignore_index=True)
    assert list(got.columns) == list(expected.columns) == OUTPUT_COLUMNS
    assert len(got) == len(expected) == len(pd.read_parquet(snapshot))
    assert got["store_id"].tolist() == expected["store_id"].tolist()
    for column in ("score", "raw_score", "base_value"):
        assert got[column].dtype == expected[column].dtype == np.float64
        np.testing.assert_allclose(got[column], expected[column], rtol=0, atol=1e-9)
    assert got["rank"].dtype == expected["rank"].dtype == np.int64
    assert got["rank"].tolist() == expected["rank"].tolist()
    for column in ("reason_1", "reason_2", "reason_3", "reasons", "mitigating", "groups"):
        assert got[column].astype(str).tolist() == expected[column].astype(str).tolist(), column
    # The printed head is the queue's top.
    assert str(expected["store_id"].iloc[0]) in result.stdout


def test_spark_refuses_a_table_without_a_model_feature(histories_model, snapshot, cli, tmp_path):
    from mlflow.pyfunc import load_model

    from features.scoring.model import model_spec

    _, name = histories_model
    uri = f"models:/{name}/1"
    dropped = model_spec(load_model(uri)).names[3]
    table = pd.read_parquet(snapshot).drop(columns=dropped)
    bad = tmp_path / "bad"
    bad.mkdir()
    table.to_parquet(bad / "part-0.parquet", index=False)  # a directory, as Spark writes
    out = tmp_path / "scores.parquet"

    result = cli(
        "score", "--features", bad, "--model", uri, "--out", out,
        "--engine", "spark", "--spark-master", MASTER,
    )  # fmt: skip

    assert result.exit_code == 1, result.output
    assert dropped in result.stderr and "lacks 1 of the model's" in result.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_spark_takes_only_a_complete_feature_table(cli, tmp_path):
    result = cli(
        "score", "--features", tmp_path / "f.parquet", "--links", tmp_path / "l.parquet",
        "--model", "models:/m/1", "--out", tmp_path / "s.parquet", "--engine", "spark",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--engine spark scores a complete feature table" in result.stderr
    assert not list(tmp_path.iterdir())
