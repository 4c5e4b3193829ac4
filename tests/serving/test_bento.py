"""``spotcheck bento build``: a Bento with the model and serving code only, served for real."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from serve_helpers import http, snapshot_stores, start_server

pytestmark = pytest.mark.slow
NOT_SHIPPED = ("optuna", "duckdb", "scikit-learn", "shap", "matplotlib", "xgboost")


@pytest.fixture(scope="module")
def bento(histories_model, mlflow_uri, tmp_path_factory, cli):
    _, name = histories_model
    home = tmp_path_factory.mktemp("bentoml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(home))
        built = cli("bento", "build", "--model", f"models:/{name}/1")
    assert built.exit_code == 0, built.stderr
    tag = built.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"spotcheck:[a-z0-9]+", tag), built.stdout
    return home, tag, home / "bentos" / tag.replace(":", "/")


def test_the_bento_carries_the_model_and_serving_code_not_training(bento, histories_model):
    _, _, path = bento
    _, name = histories_model
    code = sorted(str(p.relative_to(path / "src")) for p in (path / "src").rglob("*.py"))
    assert "serving/service.py" in code and "features/scoring/treeshap.py" in code
    assert not [c for c in code if c.startswith(("training/", "experiments/", "tests/"))]
    assert "serving/report.py" not in code and "features/build.py" not in code
    locked = (path / "env/python/requirements.txt").read_text().lower()
    packages = {re.split(r"[=<>\s]", line)[0] for line in locked.splitlines() if "==" in line}
    assert {"bentoml", "lightgbm", "numba", "mlflow-skinny"} <= packages
    assert not packages & set(NOT_SHIPPED), packages & set(NOT_SHIPPED)
    manifest = (path / "bento.yaml").read_text()
    assert f"spotcheck-{name}:v1" in manifest  # the model, by its MLflow name and version


def test_the_built_bento_serves(bento, snapshot, tmp_path):
    home, tag, _ = bento
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    server = start_server(
        [tag, "--host", "127.0.0.1"], {"BENTOML_HOME": str(home)}, tmp_path / "bento.log",
        command=[bentoml, "serve"],
    )  # fmt: skip
    try:
        status, answer = http(server.base, "/score", {"stores": snapshot_stores(snapshot, 3)})
        assert status == 200, answer
        assert [0 <= s["score"] <= 1 for s in answer["stores"]] == [True] * 3
        assert http(server.base, "/model")[1]["version"] == "1"
    finally:
        server.stop()
