"""One Optuna study shared by several `spotcheck train` workers on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from training import tune
from training.model import default_params

WORKER_TIMEOUT = 600


def _config(url: str, name: str) -> tune.TuneConfig:
    return tune.TuneConfig(seed=0, trials=0, timeout=None, storage=url, study_name=name)


def _defaults_enqueued(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if "fixed_params" in t.system_attrs]


def _open_at_once(url: str, workers: int) -> dict[str, object]:
    """``open_study`` from ``workers`` threads released together: run id -> created or error."""
    barrier = threading.Barrier(workers)
    outcomes: dict[str, object] = {}

    def worker(run_id: str) -> None:
        barrier.wait()
        try:
            outcomes[run_id] = tune.open_study(_config(url, "shared"), run_id)[1]
        except Exception as exc:  # shown by the caller's assertion
            outcomes[run_id] = exc

    threads = [threading.Thread(target=worker, args=(f"run{i}",)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_workers_opening_one_study_at_once_create_it_once(postgres):
    """Fresh databases, four workers at once: one creates, all open, defaults queued once."""
    for round_ in range(3):
        url = postgres.url(postgres.create_database(f"open_{round_}"))  # plain postgresql://
        outcomes = _open_at_once(url, 4)
        assert sorted(map(repr, outcomes.values())) == ["False", "False", "False", "True"]
        creator = next(run for run, created in outcomes.items() if created is True)
        study = optuna.load_study(study_name="shared", storage=tune.storage_url(url))
        assert study.user_attrs[tune.PARENT_RUN_ATTR] == creator
        (queued,) = _defaults_enqueued(study)
        assert queued.state == optuna.trial.TrialState.WAITING  # nobody has run it yet
        fixed = queued.system_attrs["fixed_params"]
        assert fixed["learning_rate"] == default_params()["learning_rate"]


def test_an_unreachable_storage_is_an_error_naming_it_without_the_password(postgres):
    url = f"postgresql://postgres:secret@127.0.0.1:{postgres.port + 1}/nowhere"
    with pytest.raises(tune.StudyStorageError, match=r"postgres:\*\*\*@127\.0\.0\.1") as caught:
        tune.open_study(_config(url, "any"), "run")
    assert "secret" not in str(caught.value)


@pytest.mark.slow
def test_two_train_workers_share_one_study_and_one_parent_run(postgres, make_data, tmp_path):
    data = make_data(tmp_path / "data", n_stores=1500, seed=4)
    storage = postgres.url(postgres.create_database("shared_study"))
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # The experiment (and the store's schema) exists before the workers start, its artifacts
    # in tmp_path: two workers initialising a fresh SQLite MLflow store would race.
    MlflowClient(tracking_uri).create_experiment(
        "spotcheck", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "SPOTCHECK_MODEL_NAME": "t-shared-study", "SPOTCHECK_NUM_THREADS": "1"}  # fmt: skip
    command = [
        str(Path(sys.executable).with_name("spotcheck")), "train",
        "--features", str(data.features), "--labels", str(data.labels),
        "--trials", "3", "--seed", "0", "--storage", storage, "--study-name", "shared", "--json",
    ]  # fmt: skip
    pipe = subprocess.PIPE
    workers = [
        subprocess.Popen(command, cwd=tmp_path, env=env, text=True, stdout=pipe, stderr=pipe)
        for _ in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=WORKER_TIMEOUT))
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
    summaries = [json.loads(stdout) for stdout, _ in outputs]
    run_ids = {s["run_id"] for s in summaries}
    assert len(run_ids) == 2 and {s["study_name"] for s in summaries} == {"shared"}

    study = optuna.load_study(study_name="shared", storage=tune.storage_url(storage))
    # Every trial of both workers is in the one study, the defaults among them exactly once.
    assert len(study.trials) == 3 + 3
    assert all(t.state.is_finished() for t in study.trials)
    (defaults,) = _defaults_enqueued(study)
    expected = {k: v for k, v in default_params().items() if k in defaults.params}
    assert defaults.params == pytest.approx(expected) and len(expected) > 5

    # One parent: the run that created the study; each worker logged its own three trials.
    parent = study.user_attrs[tune.PARENT_RUN_ATTR]
    assert parent in run_ids
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("spotcheck").experiment_id])
    trials = [run for run in runs if "optuna.state" in run.data.tags]
    assert {run.info.run_id for run in runs} - {t.info.run_id for t in trials} == run_ids
    assert len(trials) == 6
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent}
    per_worker = [t.data.tags[tune.WORKER_RUN_TAG] for t in trials]
    assert sorted(per_worker.count(r) for r in run_ids) == [3, 3]
    numbers = sorted(int(t.data.tags["optuna.trial_number"]) for t in trials)
    assert numbers == list(range(6))
