"""The builder API and the ``spotcheck features`` command."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import (
    FeatureBuildError,
    build_feature_table,
    build_training_table,
    spec_path,
    to_utc_timestamp,
    write_feature_table,
)
from features.io import OutputError
from features.spec import FeatureSpec, FeatureSpecError
from spotcheck.cli import app

runner = CliRunner()


def _bad_rating(reviews: pd.DataFrame) -> pd.DataFrame:
    reviews.loc[0, "rating"] = 7
    return reviews


def test_cli_writes_parquet_and_spec(make_histories, tmp_path):
    histories = make_histories(tmp_path)
    out = tmp_path / "out" / "features.parquet"
    result = runner.invoke(
        app, ["features", "--histories", str(histories), "--out", str(out), "--as-of", "2024-01-15"]
    )
    assert result.exit_code == 0, result.output
    spec = FeatureSpec.from_json(spec_path(out).read_text())
    table = pd.read_parquet(out)
    spec.check_table(table)
    assert len(table) == 5 and (table["as_of"] == pd.Timestamp("2024-01-15")).all()
    assert re.search(rf"spec hash {spec.hash}\b", result.output)
    assert "5 rows" in result.output
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, spec_path(out).name]


def test_cli_training_rows_and_csv(make_histories, tmp_path):
    histories = make_histories(tmp_path, fmt="csv")
    out = tmp_path / "train.csv"
    result = runner.invoke(
        app, ["features", "--histories", str(histories), "--out", str(out), "--training"]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table["store_id"]) == ["s1", "s2", "s3", "s4"]  # one row per label
    assert list(table["as_of"].str[:10]) == ["2024-03-01", "2024-03-05", "2024-04-01", "2024-07-01"]
    FeatureSpec.from_json(spec_path(out).read_text()).check_table(table)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--as-of", "not a time"], 2),
        (["--as-of", "2024-01-01", "--training"], 2),
    ],
)
def test_cli_rejects_bad_options_and_writes_nothing(make_histories, tmp_path, args, code):
    histories = make_histories(tmp_path)
    out = tmp_path / "out" / "features.parquet"
    result = runner.invoke(
        app, ["features", "--histories", str(histories), "--out", str(out), *args]
    )
    assert result.exit_code == code
    assert not out.parent.exists()


def test_cli_on_invalid_histories_exits_1_and_writes_nothing(make_histories, tmp_path):
    histories = make_histories(tmp_path, mutate={"reviews": _bad_rating})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = runner.invoke(
        app, ["features", "--histories", str(histories), "--out", str(out_dir / "f.parquet")]
    )
    assert result.exit_code == 1
    assert "rating" in result.output
    assert list(out_dir.iterdir()) == []
    missing = runner.invoke(
        app, ["features", "--histories", str(tmp_path / "nope"), "--out", str(out_dir / "f.csv")]
    )
    assert missing.exit_code == 1
    assert list(out_dir.iterdir()) == []


def test_cli_refuses_unknown_output_format(make_histories, tmp_path):
    out = tmp_path / "features.txt"
    result = runner.invoke(
        app, ["features", "--histories", str(make_histories(tmp_path)), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert not out.exists()


def test_training_rows_follow_sorted_labels(make_histories, tmp_path):
    table, spec = build_training_table(make_histories(tmp_path))
    assert list(zip(table["store_id"], table["as_of"].dt.strftime("%Y-%m-%d"), strict=True)) == [
        ("s1", "2024-03-01"),
        ("s2", "2024-03-05"),
        ("s3", "2024-04-01"),
        ("s4", "2024-07-01"),
    ]
    assert list(table.columns) == ["store_id", "as_of", *spec.names]


def test_label_before_store_opening_is_an_error(make_histories, tmp_path):
    def early(labels: pd.DataFrame) -> pd.DataFrame:
        labels.loc[0, "labeled_at"] = pd.Timestamp("2022-12-01", tz="UTC")  # s1 opens 2023
        return labels

    with pytest.raises(FeatureBuildError, match=r"before their store's opened_at.*s1"):
        build_training_table(make_histories(tmp_path, mutate={"labels": early}), validate=False)


def test_as_of_times_are_read_as_utc():
    assert to_utc_timestamp("2024-01-01T02:00:00+02:00") == pd.Timestamp("2024-01-01 00:00")
    assert to_utc_timestamp("2024-01-01") == pd.Timestamp("2024-01-01")
    with pytest.raises(FeatureBuildError):
        to_utc_timestamp("yesterday-ish")


def test_write_is_all_or_nothing(make_histories, tmp_path):
    table, spec = build_feature_table(make_histories(tmp_path), validate=False)
    out = tmp_path / "out" / "f.parquet"
    with pytest.raises(FeatureSpecError):
        write_feature_table(table.drop(columns=[spec.names[3]]), spec, out)
    with pytest.raises(OutputError, match="use a .parquet or .csv file name"):
        write_feature_table(table, spec, tmp_path / "out" / "f.json")
    assert not out.exists() and not spec_path(out).exists()
    assert write_feature_table(table, spec, out) == spec_path(out)
    pd.testing.assert_frame_equal(pd.read_parquet(out), table)
