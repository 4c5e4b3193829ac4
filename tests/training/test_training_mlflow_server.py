"""`spotcheck train --json` against a real MLflow tracking server backed by PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from mlflow.tracking import MlflowClient
from postgres_server import free_port

START_TIMEOUT = 180.0
TRAIN_TIMEOUT = 600


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def mlflow_server(postgres, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """``mlflow server`` on 127.0.0.1 whose backend store is a fresh PostgreSQL database.

    Yields:
        ``(tracking URI, database name, artifacts directory)``.
    """
    database = postgres.create_database("mlflow")
    artifacts = tmp_path / "server-artifacts"
    port = free_port()
    log = tmp_path / "mlflow-server.log"
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--backend-store-uri", postgres.url(database, "postgresql+psycopg2"),
        "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(base):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not become healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, database, artifacts
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.mark.slow
def test_train_json_is_pure_json_with_a_postgres_backed_tracking_server(
    mlflow_server, postgres, make_data, tmp_path
):
    uri, database, artifacts = mlflow_server
    data = make_data(tmp_path / "data", n_stores=1500, seed=6)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "SPOTCHECK_MODEL_NAME": "t-server",
           "SPOTCHECK_NUM_THREADS": "1"}  # fmt: skip
    result = subprocess.run(
        [str(Path(sys.executable).with_name("spotcheck")), "train",
         "--features", str(data.features), "--labels", str(data.labels),
         "--trials", "1", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TRAIN_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # the whole of stdout
    # MLflow did print its run links (to stdout); they went to stderr.
    assert "View run" in result.stderr and uri in result.stderr

    # Both URIs: an earlier test in this process may have set a global registry URI.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    challenger = client.get_model_version_by_alias("t-server", "challenger")
    assert (challenger.version, challenger.run_id) == (summary["version"], summary["run_id"])
    assert "model_card.md" in {a.path for a in client.list_artifacts(summary["run_id"])}
    # The server keeps the runs in PostgreSQL and the artifacts in its destination.
    connection = psycopg2.connect(host="127.0.0.1", port=postgres.port, user="postgres",
                                  dbname=database)  # fmt: skip
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT status FROM runs WHERE run_uuid = %s", (summary["run_id"],))
            assert cursor.fetchall() == [("FINISHED",)]
    finally:
        connection.close()
    assert list(artifacts.rglob("model_card.md"))
