"""Fixtures of the serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def snapshot(histories_model, cli, tmp_path_factory) -> Path:
    """The feature table of the shared marketplace, as the online snapshot."""
    histories, _ = histories_model
    out = tmp_path_factory.mktemp("snapshot") / "features.parquet"
    built = cli("features", "--histories", histories, "--out", out)
    assert built.exit_code == 0, built.stderr
    return out
