"""The scoring model that travels inside MLflow: booster, calibrator, FeatureSpec, categories.

Training writes these artifacts and serving loads them, and neither may import the other, so
the model lives here. Artifacts (plain text, so a human can read them):

* ``booster``: the LightGBM booster saved as text;
* ``calibrator``: JSON (see ``features.scoring.calibrator``);
* ``feature_spec``: the FeatureSpec JSON;
* ``category_levels``: JSON ``{feature: [level, ...]}``; a level's code is its position;
* ``genuine_reference``: JSON, each feature among the genuine stores it trained on
  (``features.scoring.reference``); absent in models trained before it existed.

The model ships ``features/spec.py`` and ``features/scoring/`` as its only code
(``code_paths``), and its signature declares each feature with the type a written feature
table has, so ``mlflow.pyfunc.load_model(uri).predict(table)`` takes that table as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from features.scoring import ScoringError
from features.scoring.calibrator import apply_calibrator
from features.scoring.encoding import RecordEncoder, check_columns, encode_features, model_input
from features.scoring.reasons import (
    EXPLANATION_COLUMNS,
    MITIGATING_REASONS,
    RISK_REASONS,
    Explainer,
    Explanation,
    explanation_columns,
)
from features.scoring.reference import GenuineReference
from features.spec import FeatureSpec

if TYPE_CHECKING:
    import lightgbm as lgb
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo

    from features.scoring.treeshap import TreePaths

ARTIFACT_FILES = {
    "booster": "booster.txt",
    "calibrator": "calibrator.json",
    "feature_spec": "feature_spec.json",
    "category_levels": "category_levels.json",
    "genuine_reference": "genuine_reference.json",
}
OUTPUT_COLUMNS = ["score", "raw_score", *EXPLANATION_COLUMNS]
# ``predict`` params (declared in the signature): how many reasons each way.
REASON_PARAMS = {"risk_reasons": RISK_REASONS, "mitigating_reasons": MITIGATING_REASONS}
# MLflow signature type of each spec dtype: the types of a written feature table.
SIGNATURE_TYPES = {"float": "double", "int": "long", "bool": "boolean", "category": "string"}


@dataclass(frozen=True)
class Scored:
    """Scores of a batch of stores with their explanations.

    Attributes:
        score: Calibrated probabilities.
        raw: Raw booster log-odds (a tie-breaker for ranking).
        contributions: SHAP contributions (rows x features + bias), log-odds; each row sums
            to its raw score.
        explanations: Each row's reasons both ways and group sums.
    """

    score: np.ndarray
    raw: np.ndarray
    contributions: np.ndarray
    explanations: list[Explanation]


class CounterfeitScorer(mlflow.pyfunc.PythonModel):
    """Calibrated counterfeit-store score with SHAP reasons, as an MLflow pyfunc model.

    Build it in-process with ``from_parts`` (training) or let MLflow call ``load_context``
    (serving). ``predict`` returns one row per input row with ``score`` (calibrated
    probability), ``raw_score`` (log-odds, a tie-breaker for ranking), ``base_value``
    (``base_value`` + contributions = ``raw_score``), ``reason_1..3`` (texts), ``reasons`` and
    ``mitigating`` (JSON lists, see ``features.scoring.reasons.Reason``) and ``groups`` (JSON:
    contribution per feature group). ``predict`` params ``risk_reasons`` and
    ``mitigating_reasons`` set how many reasons each way (default 5 and 3).
    ``score_records`` is the fast path for a few stores given as plain mappings.
    """

    # Input is checked against the FeatureSpec in ``predict`` and the model is logged with an
    # explicit signature, so MLflow's type-hint wrapping (and its warning) is not needed.
    _skip_type_hint_validation = True

    def __init__(self) -> None:
        # Empty: MLflow pickles this object and fills it in ``load_context``.
        self.booster_: lgb.Booster | None = None
        self.calibrator_: dict[str, Any] = {}
        self.spec_: FeatureSpec | None = None
        self.levels_: dict[str, list[str]] = {}
        self.records_: RecordEncoder | None = None
        self.reference_: GenuineReference | None = None
        self.explainer_: Explainer | None = None
        self.paths_: TreePaths | None = None

    @classmethod
    def from_parts(
        cls,
        booster: lgb.Booster,
        calibrator: dict[str, Any],
        spec: FeatureSpec,
        levels: dict[str, list[str]],
        reference: GenuineReference | None = None,
    ) -> CounterfeitScorer:
        """A ready scorer from fitted parts, without going through files."""
        scorer = cls()
        scorer._load(booster, calibrator, spec, levels, reference)
        return scorer

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the artifacts MLflow hands over (paths keyed like ``ARTIFACT_FILES``)."""
        # Imported here: lightgbm pulls in scikit-learn whenever it is installed, and merely
        # importing this module (e.g. to check a spec) should stay light.
        import lightgbm as lgb

        paths = context.artifacts
        reference = None
        if "genuine_reference" in paths:
            data = json.loads(Path(paths["genuine_reference"]).read_text())
            reference = GenuineReference.from_dict(data)
        self._load(
            lgb.Booster(model_file=paths["booster"]),
            json.loads(Path(paths["calibrator"]).read_text()),
            FeatureSpec.from_json(Path(paths["feature_spec"]).read_text()),
            json.loads(Path(paths["category_levels"]).read_text()),
            reference,
        )

    def _load(
        self,
        booster: lgb.Booster,
        calibrator: dict[str, Any],
        spec: FeatureSpec,
        levels: dict[str, list[str]],
        reference: GenuineReference | None = None,
    ) -> None:
        """Set every piece of fitted state at once, and what is derived from it."""
        if booster.num_feature() != len(spec):
            raise ScoringError(
                f"booster has {booster.num_feature()} features, its FeatureSpec {len(spec)}"
            )
        self.booster_, self.calibrator_, self.spec_, self.levels_ = (
            booster,
            calibrator,
            spec,
            levels,
        )
        self.records_ = RecordEncoder(spec, levels)
        self.reference_ = reference
        self.explainer_ = Explainer(spec, levels, reference)
        # Imported here: numba takes a moment to import, and only a loaded model needs it.
        from features.scoring.treeshap import tree_paths

        self.paths_ = tree_paths(booster)

    @property
    def spec(self) -> FeatureSpec:
        """The model's FeatureSpec."""
        if self.spec_ is None:
            raise ScoringError("scorer is not loaded")
        return self.spec_

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw booster log-odds for a feature table."""
        return self.booster_.predict(
            encode_features(frame, self.spec, self.levels_), raw_score=True
        )

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP of an encoded matrix: rows x (features + bias), in log-odds.

        ``features.scoring.treeshap``: equal to LightGBM's ``pred_contrib`` and 5-10x faster.
        """
        from features.scoring.treeshap import shap_values

        return shap_values(self.paths_, matrix)

    def explain(
        self,
        matrix: np.ndarray,
        categories: Mapping[int, Sequence[object]] | None = None,
        risk_k: int = RISK_REASONS,
        mitigating_k: int = MITIGATING_REASONS,
    ) -> Scored:
        """Score an encoded matrix and explain every row.

        Args:
            matrix: Rows x spec features, float64 (``encode_features`` or ``records_``).
            categories: Original levels of the categorical features by column index, for
                the reason text (the matrix holds only their codes).
            risk_k: Risk-raising reasons per row at most.
            mitigating_k: Mitigating reasons per row at most.
        """
        # The contributions add up to the raw score exactly, so a second pass through the
        # trees for the raw score alone would only cost time.
        contributions = self.contributions(matrix)
        raw = contributions.sum(axis=1)
        return Scored(
            score=apply_calibrator(self.calibrator_, raw),
            raw=raw,
            contributions=contributions,
            explanations=self.explainer_.explain(
                contributions, matrix, categories, risk_k, mitigating_k
            ),
        )

    def score_frame(
        self,
        frame: pd.DataFrame,
        risk_k: int = RISK_REASONS,
        mitigating_k: int = MITIGATING_REASONS,
    ) -> pd.DataFrame:
        """Score a feature table (extra columns ignored): ``OUTPUT_COLUMNS``, input order.

        Args:
            frame: Feature table with the spec's columns.
            risk_k: Risk-raising reasons per row at most.
            mitigating_k: Mitigating reasons per row at most.
        """
        check_columns(frame, self.spec)
        matrix = encode_features(frame, self.spec, self.levels_)
        categories = {
            j: frame[f.name].to_numpy(dtype=object)
            for j, f in enumerate(self.spec)
            if f.dtype == "category"
        }
        scored = self.explain(matrix, categories, risk_k, mitigating_k)
        out = pd.DataFrame({"score": scored.score, "raw_score": scored.raw})
        for name, column in explanation_columns(scored.explanations).items():
            out[name] = column
        return out[OUTPUT_COLUMNS]

    def score_records(
        self,
        records: Sequence[Mapping[str, Any]],
        risk_k: int = RISK_REASONS,
        mitigating_k: int = MITIGATING_REASONS,
    ) -> list[dict[str, Any]]:
        """Score a few stores given as ``{feature: value}`` mappings: the online fast path.

        Returns:
            Per store: ``score``, ``raw_score``, ``base_value``, ``reasons`` and
            ``mitigating`` (lists of reason dicts) and ``groups``.
        """
        matrix = self.records_.matrix(records)
        categories = {
            j: [record.get(f.name) for record in records]
            for j, f in enumerate(self.spec)
            if f.dtype == "category"
        }
        scored = self.explain(matrix, categories, risk_k, mitigating_k)
        return [
            {
                "score": float(scored.score[i]),
                "raw_score": float(scored.raw[i]),
                **scored.explanations[i].to_dict(),
            }
            for i in range(len(records))
        ]

    def predict(self, context, model_input, params=None) -> pd.DataFrame:  # noqa: D417
        """Score rows and explain each score.

        Args:
            model_input: DataFrame with the spec's feature columns (extra columns ignored).
            params: ``risk_reasons`` and ``mitigating_reasons`` (``REASON_PARAMS``).

        Returns:
            DataFrame with ``OUTPUT_COLUMNS``, same row order as the input.
        """
        params = {**REASON_PARAMS, **(params or {})}
        return self.score_frame(
            pd.DataFrame(model_input),
            int(params["risk_reasons"]),
            int(params["mitigating_reasons"]),
        )


def write_artifacts(
    directory: str | Path,
    booster: lgb.Booster,
    calibrator: dict[str, Any],
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    reference: GenuineReference | None = None,
) -> dict[str, str]:
    """Write the model's artifacts into ``directory`` and return MLflow's artifacts mapping.

    Args:
        directory: An existing (temporary) directory.
        booster: Fitted LightGBM booster.
        calibrator: Calibrator JSON data.
        spec: FeatureSpec of the booster's columns.
        levels: Category levels.
        reference: Genuine-store references (written when given).

    Returns:
        ``{artifact key: file path}`` for ``mlflow.pyfunc.log_model(artifacts=...)``.
    """
    directory = Path(directory)
    paths = {key: directory / name for key, name in ARTIFACT_FILES.items()}
    booster.save_model(str(paths["booster"]))
    paths["calibrator"].write_text(json.dumps(calibrator, indent=1))
    paths["feature_spec"].write_text(spec.to_json())
    paths["category_levels"].write_text(json.dumps(levels, indent=1, sort_keys=True))
    if reference is None:
        del paths["genuine_reference"]
    else:
        paths["genuine_reference"].write_text(json.dumps(reference.to_dict()))
    return {key: str(path) for key, path in paths.items()}


def log_scorer(
    scorer: CounterfeitScorer,
    example_rows: pd.DataFrame,
    name: str = "model",
    metadata: dict[str, Any] | None = None,
) -> ModelInfo:
    """Log ``scorer`` to the active MLflow run as a pyfunc model (see ``pyfunc_arguments``)."""
    with tempfile.TemporaryDirectory() as tmp, _without_uv_files():
        return mlflow.pyfunc.log_model(
            name=name, **pyfunc_arguments(scorer, example_rows, Path(tmp), metadata)
        )


def save_scorer(scorer: CounterfeitScorer, example_rows: pd.DataFrame, path: str | Path) -> None:
    """Save ``scorer`` as a pyfunc model directory at ``path`` (see ``pyfunc_arguments``)."""
    with tempfile.TemporaryDirectory() as tmp, _without_uv_files():
        mlflow.pyfunc.save_model(str(path), **pyfunc_arguments(scorer, example_rows, Path(tmp)))


@contextmanager
def _without_uv_files() -> Iterator[None]:
    """Keep MLflow from copying the project's uv.lock into the model.

    MLflow copies the uv files of the working directory's project; the model pins its own
    few requirements (``requirements``) and must not carry the training dependencies.
    """
    saved = os.environ.get("MLFLOW_LOG_UV_FILES")
    os.environ["MLFLOW_LOG_UV_FILES"] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_LOG_UV_FILES", None)
        else:
            os.environ["MLFLOW_LOG_UV_FILES"] = saved


def pyfunc_arguments(
    scorer: CounterfeitScorer,
    example_rows: pd.DataFrame,
    directory: Path,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``mlflow.pyfunc.log_model``/``save_model`` needs to store ``scorer``.

    Args:
        scorer: A fitted scorer.
        example_rows: A few feature rows for the input example.
        directory: An empty temporary directory for the artifacts and the code to copy; it
            must live until MLflow has stored the model.
        metadata: Extra model metadata; the FeatureSpec and its hash are always added.

    Returns:
        Keyword arguments: an empty scorer (everything arrives through the artifacts), the
        artifacts, the signature, the input example, the code (``features/spec.py`` and
        ``features/scoring`` only), pinned requirements and metadata.
    """
    example = model_input(example_rows, scorer.spec).reset_index(drop=True)
    return {
        "python_model": CounterfeitScorer(),
        "artifacts": write_artifacts(
            directory,
            scorer.booster_,
            scorer.calibrator_,
            scorer.spec,
            scorer.levels_,
            scorer.reference_,
        ),
        "signature": model_signature(scorer.spec, scorer.score_frame(example)),
        "input_example": example,
        "code_paths": code_paths(directory / "code"),
        "pip_requirements": requirements(),
        "metadata": {
            "feature_spec_hash": scorer.spec.hash,
            "feature_spec": scorer.spec.to_dict(),
            **(metadata or {}),
        },
    }


def requirements() -> list[str]:
    """Pinned runtime requirements of the scoring model (skips MLflow's slow inference)."""
    import lightgbm
    import numba
    import pyarrow

    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"numba=={numba.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"pyarrow=={pyarrow.__version__}",
    ]


def code_paths(directory: str | Path) -> list[str]:
    """Copy the code a model needs to load into ``directory``: ``code_paths`` for MLflow.

    Only ``features/__init__.py``, ``features/spec.py`` and ``features/scoring/``, kept
    under a ``features`` folder so the pickled scorer's module path stays valid.
    """
    package = Path(__file__).resolve().parent.parent
    target = Path(directory) / "features"
    (target / "scoring").mkdir(parents=True)
    shutil.copy2(package / "__init__.py", target / "__init__.py")
    shutil.copy2(package / "spec.py", target / "spec.py")
    for source in sorted((package / "scoring").glob("*.py")):
        shutil.copy2(source, target / "scoring" / source.name)
    return [str(target)]


def model_signature(spec: FeatureSpec, output: pd.DataFrame) -> ModelSignature:
    """Signature: each feature with its written type, the output's columns, the params."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec(SIGNATURE_TYPES[f.dtype], f.name) for f in spec])
    inferred = infer_signature(None, output, params=REASON_PARAMS)
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def scorer_of(model: mlflow.pyfunc.PyFuncModel) -> CounterfeitScorer:
    """The spotcheck scorer inside a model loaded with ``mlflow.pyfunc.load_model``.

    Raises:
        ScoringError: The model is not a spotcheck model.
    """
    inner = model.unwrap_python_model()
    if not isinstance(inner, CounterfeitScorer):
        raise ScoringError(f"not a spotcheck model: {type(inner).__name__}")
    return inner


def model_spec(model: mlflow.pyfunc.PyFuncModel) -> FeatureSpec:
    """The FeatureSpec of a model loaded with ``mlflow.pyfunc.load_model``."""
    return scorer_of(model).spec
