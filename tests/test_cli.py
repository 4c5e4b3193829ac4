"""The composed ``spotcheck`` command, driven through typer's CliRunner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spotcheck.cli import app


def _histories_fixture():
    # The valid histories builder lives in tests/features/conftest.py; load it by path since
    # the tests folders are not packages.
    path = Path(__file__).parent / "features" / "conftest.py"
    spec = importlib.util.spec_from_file_location("histories_fixture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fixture = _histories_fixture()
runner = CliRunner()


@pytest.fixture
def histories(tmp_path) -> Path:
    return fixture.write_histories(tmp_path / "histories", fixture.valid_tables(), "csv")


def test_help_lists_validate():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "validate" in result.output


def test_validate_prints_summary_and_exits_0(histories):
    result = runner.invoke(app, ["validate", str(histories), "--now", "2025-01-01T00:00:00"])
    assert result.exit_code == 0, result.output
    assert "orders" in result.output and "10" in result.output
    assert "time range: 2023-01-01 00:00:00 to 2024-07-01 00:00:00 UTC" in result.output
    assert "is_counterfeit=0: 2, is_counterfeit=1: 2" in result.output
    assert "satisfies the contract" in result.output


def test_validate_prints_violations_and_exits_1(histories):
    orders = histories / "orders.csv"
    text = orders.read_text().replace(",20.0,", ",-20.0,")  # o3's amount
    orders.write_text(text)
    before = sorted(p.name for p in histories.iterdir())
    result = runner.invoke(app, ["validate", str(histories)])
    assert result.exit_code == 1
    assert "1 contract violation in" in result.output
    assert "orders.amount: 1 row must be > 0 (e.g. order_id o3='-20.0')" in result.output
    assert "satisfies the contract" not in result.output
    assert sorted(p.name for p in histories.iterdir()) == before


def test_validate_now_option_flags_later_timestamps(histories):
    result = runner.invoke(app, ["validate", str(histories), "--now", "2024-02-01T00:00:00Z"])
    assert result.exit_code == 1
    assert "labels.labeled_at: 4 rows must not be in the future" in result.output


def test_validate_missing_directory_is_bad_input_exit_1(tmp_path):
    """The same histories error exits 1 from every command (2 is for usage errors)."""
    for command in (
        ["validate"],
        ["features", "--out", str(tmp_path / "f.parquet"), "--histories"],
    ):
        result = runner.invoke(app, [*command, str(tmp_path / "nope")])
        assert result.exit_code == 1, command
        assert "error: histories directory" in result.output
        assert "does not exist" in result.output


def test_validate_rejects_bad_now(histories):
    result = runner.invoke(app, ["validate", str(histories), "--now", "yesterday"])
    assert result.exit_code == 2
    assert "not an ISO 8601 time" in result.output
