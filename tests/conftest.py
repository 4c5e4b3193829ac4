"""Shared fixtures: a temporary MLflow store, small seeded team data, tiny scoring models.

``postgres`` is a throwaway PostgreSQL 15 server for the session (``tests/postgres_server.py``).

The "own data" generator makes a feature table whose label depends on the price ratio, an
interaction no linear model can express, a category and link rings, so a tuned tree model
has something real to beat both baselines on. ``tiny_scorer`` builds a small real scorer
(LightGBM on three features of every dtype) and ``save_scorer`` stores it as an MLflow
pyfunc model exactly as training logs one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CATEGORIES = ("apparel", "electronics", "beauty", "watches")


@dataclass(frozen=True)
class OwnData:
    """Paths of a generated team dataset."""

    features: Path
    labels: Path
    links: Path
    n_stores: int


def make_own_data(
    directory: Path, n_stores: int = 3000, seed: int = 0, labeled_share: float = 0.7
) -> OwnData:
    """Write features.parquet, labels.parquet and links.parquet into ``directory``."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"s{i:05d}" for i in range(n_stores)])
    price = rng.lognormal(mean=-0.1, sigma=0.35, size=n_stores)
    modules = rng.poisson(4, size=n_stores)
    dispute_rate = rng.beta(1, 25, size=n_stores)
    category = rng.choice(CATEGORIES, size=n_stores, p=[0.4, 0.25, 0.2, 0.15])
    verified = rng.random(n_stores) < 0.7
    # Thresholds and interactions a linear model cannot express.
    logit = (
        -4.0
        + 2.5 * (price < 0.6)
        + 4.5 * ((dispute_rate > 0.06) & (modules <= 2))
        + 4.0 * ((category == "watches") & ~verified)
    )
    counterfeit = rng.random(n_stores) < 1 / (1 + np.exp(-logit))
    price_missing = rng.random(n_stores) < 0.08
    features = pd.DataFrame(
        {
            "store_id": ids,
            "price_to_reference_median": np.where(price_missing, np.nan, price),
            "storefront_modules": modules.astype("int64"),
            "dispute_rate": dispute_rate,
            "category": category,
            "identity_verified": verified,
            "noise": rng.normal(size=n_stores),
        }
    )
    labeled = rng.random(n_stores) < labeled_share
    start = pd.Timestamp("2024-01-01")
    labels = pd.DataFrame(
        {
            "store_id": ids[labeled],
            "is_counterfeit": counterfeit[labeled].astype("int64"),
            "labeled_at": start
            + pd.to_timedelta(rng.integers(0, 365 * 24, labeled.sum()), unit="h"),
        }
    )
    # Half the counterfeit stores and a few genuine ones (multi-store sellers) share devices
    # in rings of four; other links are random.
    fake, genuine = ids[counterfeit], ids[~counterfeit]
    ringed = np.concatenate(
        [
            rng.choice(fake, size=len(fake) // 2, replace=False),
            rng.choice(genuine, size=len(genuine) // 12, replace=False),
        ]
    )
    rng.shuffle(ringed)
    pairs = [
        (a, b)
        for ring in np.array_split(ringed, max(1, len(ringed) // 4))
        for a in ring
        for b in ring
        if a != b
    ]
    randoms = rng.choice(ids, size=(n_stores // 5, 2))
    pairs += [(a, b) for a, b in randoms if a != b]
    links = pd.DataFrame(pairs, columns=["store_id", "linked_store_id"])
    links["kind"] = "device"
    directory.mkdir(parents=True, exist_ok=True)
    out = OwnData(
        directory / "features.parquet",
        directory / "labels.parquet",
        directory / "links.parquet",
        n_stores,
    )
    features.to_parquet(out.features, index=False)
    labels.to_parquet(out.labels, index=False)
    links.to_parquet(out.links, index=False)
    return out


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL 15 on 127.0.0.1 for the session (``tests/postgres_server.py``).

    Tests make their own databases (``postgres.create_database``). Missing binaries fail the
    test with the reason: CI must run it, so it is never skipped.
    """
    from postgres_server import PostgresUnavailable, start

    try:
        server = start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def one_lightgbm_thread():
    """Train with one thread: on these small tables more threads only add synchronisation,
    which stalls badly when other jobs share the cores (the default is every core; see
    ``test_threads_default_to_the_available_cores``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPOTCHECK_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="session")
def own_data(tmp_path_factory: pytest.TempPathFactory) -> OwnData:
    """A 3,000-store team dataset (read-only: tests must not modify it)."""
    return make_own_data(tmp_path_factory.mktemp("own_data"))


@pytest.fixture(scope="session")
def make_data():
    """The generator itself, for tests that need variants."""
    return make_own_data


@dataclass(frozen=True)
class Tracking:
    """Where one test's MLflow models and Optuna studies go."""

    uri: str
    model_name: str
    workdir: Path


@pytest.fixture(scope="package")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory):
    """One SQLite MLflow store for the training tests, its artifacts in the same tmp dir.

    The ``spotcheck`` experiment is created up front with an explicit artifact location, so
    no test writes artifacts into the checkout whatever its working directory.
    """
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        # MLflow fixes a SQLite store's default artifact root (./mlruns) when the store is
        # first opened: open it from here so experiments made later never use the checkout.
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.MlflowClient(uri).create_experiment(
            "spotcheck", artifact_location=(root / "artifacts").as_uri()
        )
        yield uri


@pytest.fixture
def tracking(mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> Tracking:
    """A model name and Optuna storage of this test; the test runs from ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    name = "t-" + re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:80]
    monkeypatch.setenv("SPOTCHECK_MODEL_NAME", name)
    monkeypatch.setenv("SPOTCHECK_OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    monkeypatch.delenv("SPOTCHECK_ECE_THRESHOLD", raising=False)
    return Tracking(mlflow_uri, name, tmp_path)


def run_cli(*args: object):
    """Invoke ``spotcheck`` in-process; returns click's Result (stdout/stderr separate)."""
    from typer.testing import CliRunner

    from spotcheck.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def cli():
    """``run_cli`` as a fixture (test folders are not packages, so no cross-imports)."""
    return run_cli


@dataclass(frozen=True)
class Trained:
    """A model trained once for the package's tests (treat as read-only)."""

    data: OwnData
    model_name: str
    summary: dict


@pytest.fixture(scope="package")
def byo_model(
    mlflow_uri: str, own_data: OwnData, tmp_path_factory: pytest.TempPathFactory
) -> Trained:
    """Train on the team data with links once: 3 trials, registered as version 1."""
    import json

    storage = tmp_path_factory.mktemp("byo_optuna") / "optuna.db"
    name = "t-shared-byo"
    result = run_cli(
        "train", "--features", own_data.features, "--labels", own_data.labels,
        "--links", own_data.links, "--trials", 3, "--seed", 7, "--model-name", name,
        "--storage", f"sqlite:///{storage}", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr or result.output
    return Trained(own_data, name, json.loads(result.stdout))


@pytest.fixture(scope="package")
def histories_model(mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic marketplace and a model trained on it once (no tuning), version 1.

    Returns:
        ``(histories directory, model name)``; treat both as read-only.
    """
    root = tmp_path_factory.mktemp("histories_model")
    histories = root / "market"
    made = run_cli("synth", "--stores", 2500, "--seed", 9, "--out", histories)
    assert made.exit_code == 0, made.stderr
    name = "t-shared-histories"
    trained = run_cli(
        "train", "--histories", histories, "--seed", 3, "--model-name", name,
        "--storage", f"sqlite:///{root / 'optuna.db'}",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr or trained.output
    return histories, name


@pytest.fixture(scope="package")
def histories_scores(histories_model, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """``spotcheck score`` of every store of ``histories_model`` (read-only), riskiest first."""
    histories, name = histories_model
    out = tmp_path_factory.mktemp("histories_scores") / "scores.parquet"
    scored = run_cli(
        "score", "--histories", histories, "--model", f"models:/{name}/1", "--out", out,
        "--top", 0,
    )  # fmt: skip
    assert scored.exit_code == 0, scored.stderr
    return pd.read_parquet(out)


def make_tiny_scorer(calibrator: dict | None = None):
    """A real scorer on features ``n`` (int), ``flag`` (bool), ``kind`` (category), ``x``."""
    import lightgbm as lgb

    from features.scoring.encoding import category_levels, encode_features
    from features.scoring.model import CounterfeitScorer
    from features.scoring.reference import fit_reference
    from features.spec import Feature, FeatureSpec

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "n": rng.integers(0, 5, 300),
            "flag": rng.random(300) < 0.5,
            "kind": rng.choice(["a", "b"], 300),
            "x": rng.normal(size=300),
        }
    )
    y = ((frame["n"] > 2) & (frame["kind"] == "a") | (frame["x"] > 1.5)).astype(int)
    spec = FeatureSpec(
        (
            Feature("n", "custom", "int", "n", "higher", "n is {value}"),
            Feature("flag", "custom", "bool", "flag", "none", "flag is {value}"),
            Feature("kind", "custom", "category", "kind", "none", "kind is {value}"),
            Feature("x", "custom", "float", "x", "higher", "x is {value:.2f}"),
        )
    )
    levels = category_levels(frame, spec)
    dataset = lgb.Dataset(encode_features(frame, spec, levels), y, categorical_feature=[2])
    params = {"verbosity": -1, "min_data_in_leaf": 5, "num_threads": 1, "deterministic": True}
    booster = lgb.train(params, dataset, num_boost_round=20)
    calibrator = calibrator or {"method": "sigmoid", "a": 1, "b": 0}
    reference = fit_reference(encode_features(frame[y == 0], spec, levels), spec)
    return CounterfeitScorer.from_parts(booster, calibrator, spec, levels, reference), frame


@pytest.fixture(scope="session")
def make_scorer():
    """``make_tiny_scorer`` itself, for a scorer with another calibrator."""
    return make_tiny_scorer


@pytest.fixture(scope="session")
def tiny_scorer():
    """A small real scorer (read-only) and the rows it was trained on."""
    return make_tiny_scorer()


@pytest.fixture(scope="session")
def save_scorer(tmp_path_factory: pytest.TempPathFactory):
    """Store a scorer as an MLflow pyfunc model directory, as training logs it."""
    from features.scoring.model import save_scorer as save_model

    def save(scorer, example: pd.DataFrame) -> Path:
        path = tmp_path_factory.mktemp("saved_model") / "model"
        save_model(scorer, example.head(5), path)
        return path

    return save
