"""Model registry: register new versions as ``@challenger`` and promote through gates.

The gates compare models only on labels neither of them trained on, and decide on paired
bootstrap intervals over the same rows (``training.evaluate.paired_difference``):

* the challenger's evidence is its run's holdout (the most recent labels), scored by the
  model its run fit WITHOUT them (the registered model is refit on every label, so it has
  seen them): the same recipe, the same data minus the holdout;
* the first model becomes ``@champion`` only if it is non-inferior to every baseline: the
  lower end of the 95% interval of PR-AUC(model) - PR-AUC(baseline) above ``-margin``;
* a challenger replaces the champion only if it is non-inferior to it on the holdout rows
  the champion did not train on (the champion scores them itself);
* in both cases it must not be confidently miscalibrated: the lower end of its expected
  calibration error's interval at or under the threshold.

The decision, its figures and the intervals are written as tags on both versions; a rejected
challenger stays registered (and keeps its alias) so it can be inspected.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.byo import LABEL
from features.scoring import ScoringError
from features.scoring.encoding import model_input
from features.scoring.model import model_spec
from features.spec import AS_OF, KEY
from features.tracking import CHALLENGER_ALIAS, CHAMPION_ALIAS
from training import TrainingError
from training.evaluate import Interval, bootstrap, paired_difference, pr_auc
from training.tracking import HOLDOUT_ARTIFACT, TRAINING_KEYS_ARTIFACT

# Columns of the holdout artifact: the development model's scores and the baselines'.
MODEL_RAW = "model_raw_score"
MODEL_SCORE = "model_score"
BASELINE_PREFIX = "baseline_"
# Fewer positives than this among the rows both models can be compared on: no decision.
MIN_COMPARE_POSITIVES = 5


class PromotionError(TrainingError):
    """Promotion cannot be decided (no such model, no challenger, missing holdout)."""


@dataclass(frozen=True)
class Gates:
    """The gates' thresholds.

    Attributes:
        ece_threshold: Largest expected calibration error a champion may (confidently) have.
        margin: Non-inferiority margin on PR-AUC.
        samples: Bootstrap resamples.
    """

    ece_threshold: float
    margin: float
    samples: int = 1000


@dataclass(frozen=True)
class Decision:
    """Outcome of ``promote``.

    Attributes:
        promoted: True if the challenger is (now) the champion.
        reason: Plain-language reason for the decision.
        challenger_version: Version that was ``@challenger``.
        champion_version: Version that was ``@champion`` before, if any.
        figures: The numbers the gates compared.
        intervals: The bootstrap intervals they decided on.
    """

    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None
    figures: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, Interval] = field(default_factory=dict)


def register(client: MlflowClient, model_uri: str, name: str, tags: dict[str, str]) -> ModelVersion:
    """Register a logged model as a new version of ``name`` with alias ``@challenger``."""
    version = mlflow.register_model(model_uri, name, tags=tags)
    client.set_registered_model_alias(name, CHALLENGER_ALIAS, version.version)
    return version


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as exc:
        raise PromotionError(f"no registered model named {name!r}: {exc.message}") from exc
    return {alias: str(version) for alias, version in aliases.items()}


def _artifact(run_id: str, path: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            raise PromotionError(f"run {run_id} has no {path} artifact: {exc}") from exc
        return pd.read_parquet(Path(local))


def load_holdout(run_id: str) -> pd.DataFrame:
    """The holdout rows of a training run, with its development model's scores."""
    holdout = _artifact(run_id, HOLDOUT_ARTIFACT)
    if MODEL_SCORE not in holdout.columns:
        raise PromotionError(
            f"run {run_id}'s holdout has no {MODEL_SCORE!r} column (trained before the gates "
            "compared models on unseen labels); retrain it"
        )
    return holdout


def unseen_by(holdout: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """The holdout rows whose (store, as-of) key is not among a model's training keys."""
    columns = [c for c in (KEY, AS_OF) if c in holdout.columns and c in keys.columns]
    seen = pd.MultiIndex.from_frame(keys[columns])
    mask = ~pd.MultiIndex.from_frame(holdout[columns]).isin(seen)
    return holdout[mask].reset_index(drop=True)


def score_with(name: str, version: str, rows: pd.DataFrame) -> np.ndarray:
    """Calibrated scores of ``rows`` by a registered version.

    Raises:
        ScoringError: The version needs feature columns the rows lack.
    """
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return model.predict(model_input(rows, model_spec(model)))["score"].to_numpy()


def _calibration_gate(y: np.ndarray, scores: np.ndarray, gates: Gates) -> tuple[Interval, bool]:
    """ECE interval, and whether it passes (its lower end at or under the threshold)."""
    ece = bootstrap(y, scores, "ece", gates.samples)
    return ece, ece.low <= gates.ece_threshold


def _first_model_gates(
    holdout: pd.DataFrame, gates: Gates
) -> tuple[bool, str, dict[str, Interval]]:
    y = holdout[LABEL].to_numpy()
    mine = holdout[MODEL_SCORE].to_numpy()
    intervals = {}
    lost = []
    for column in (c for c in holdout.columns if c.startswith(BASELINE_PREFIX)):
        baseline = column.removeprefix(BASELINE_PREFIX)
        interval = paired_difference(y, mine, holdout[column].to_numpy(), "pr_auc", gates.samples)
        intervals[f"pr_auc_minus_{baseline}"] = interval
        if not interval.low > -gates.margin:
            lost.append(f"{baseline} {interval}")
    ece, calibrated = _calibration_gate(y, mine, gates)
    intervals["ece"] = ece
    if lost:
        return (
            False,
            (
                "first model not shown non-inferior to the baselines: PR-AUC difference "
                "(95% interval) "
                f"{'; '.join(lost)} reaches below -{gates.margin}"
            ),
            intervals,
        )
    if not calibrated:
        return False, _miscalibrated(ece, gates), intervals
    against = ", ".join(f"{k.removeprefix('pr_auc_minus_')} {v}" for k, v in intervals.items()
                        if k != "ece")  # fmt: skip
    return (
        True,
        (
            f"first model non-inferior to the baselines within {gates.margin} "
            f"(PR-AUC difference, 95% interval: {against or 'no baseline logged'})"
        ),
        intervals,
    )


def _miscalibrated(ece: Interval, gates: Gates) -> str:
    return (
        f"calibration error {ece.estimate:.4f} (95% interval {ece.low:.4f}-{ece.high:.4f}) "
        f"exceeds {gates.ece_threshold} even at its lower end"
    )


def _challenge_gates(
    rows: pd.DataFrame, champion_scores: np.ndarray, gates: Gates
) -> tuple[bool, str, dict[str, Interval]]:
    y = rows[LABEL].to_numpy()
    mine = rows[MODEL_SCORE].to_numpy()
    difference = paired_difference(y, mine, champion_scores, "pr_auc", gates.samples)
    ece, calibrated = _calibration_gate(y, mine, gates)
    intervals = {"pr_auc_minus_champion": difference, "ece": ece}
    if not difference.low > -gates.margin:
        return (
            False,
            (
                f"challenger PR-AUC is lower than the champion's beyond the margin "
                f"{gates.margin}: difference {difference} (95% interval) on {len(y)} holdout "
                "rows neither trained on"
            ),
            intervals,
        )
    if not calibrated:
        return False, _miscalibrated(ece, gates), intervals
    return (
        True,
        (
            f"challenger non-inferior to the champion within {gates.margin}: PR-AUC difference "
            f"{difference} (95% interval) on {len(y)} holdout rows neither trained on"
        ),
        intervals,
    )


def _write_tags(client: MlflowClient, name: str, decision: Decision, holdout_run: str,
                gates: Gates) -> None:  # fmt: skip
    common = {
        "promotion.decision": "promoted" if decision.promoted else "rejected",
        "promotion.reason": decision.reason,
        "promotion.timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion.holdout_run_id": holdout_run,
        "promotion.challenger_version": decision.challenger_version,
        "promotion.champion_version": decision.champion_version or "none",
        "promotion.ece_threshold": str(gates.ece_threshold),
        "promotion.pr_auc_margin": str(gates.margin),
        "promotion.bootstrap_samples": str(gates.samples),
        **{f"promotion.{k}": f"{v:.6f}" for k, v in decision.figures.items()},
    }
    for key, interval in decision.intervals.items():
        common[f"promotion.{key}"] = f"{interval.estimate:.6f}"
        common[f"promotion.{key}.low"] = f"{interval.low:.6f}"
        common[f"promotion.{key}.high"] = f"{interval.high:.6f}"
    roles = {decision.challenger_version: "challenger"}
    if decision.champion_version:
        roles[decision.champion_version] = "champion"
    for version, role in roles.items():
        other = decision.champion_version if role == "challenger" else decision.challenger_version
        tags = {**common, "promotion.role": role, "promotion.compared_version": other or "none"}
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)


def promote(client: MlflowClient, name: str, gates: Gates) -> Decision:
    """Decide whether ``@challenger`` becomes ``@champion`` and record the decision.

    Args:
        client: MLflow client on the registry.
        name: Registered model name.
        gates: The thresholds.

    Returns:
        The decision (aliases and tags already updated).

    Raises:
        PromotionError: No such model, no ``@challenger``, or no holdout to compare on.
    """
    aliases = _aliases(client, name)
    if CHALLENGER_ALIAS not in aliases:
        raise PromotionError(f"model {name!r} has no @{CHALLENGER_ALIAS}; run spotcheck train")
    challenger = client.get_model_version(name, aliases[CHALLENGER_ALIAS])
    champion_version = aliases.get(CHAMPION_ALIAS)
    if champion_version == str(challenger.version):
        return Decision(True, "challenger is already the champion", champion_version, None)
    holdout = load_holdout(challenger.run_id)
    y = holdout[LABEL].to_numpy()
    figures = {"challenger_pr_auc": pr_auc(y, holdout[MODEL_SCORE])}
    if champion_version is None:
        for column in (c for c in holdout.columns if c.startswith(BASELINE_PREFIX)):
            baseline = column.removeprefix(BASELINE_PREFIX)
            figures[f"baseline_{baseline}_pr_auc"] = bootstrap(
                y, holdout[column], "pr_auc", 1
            ).estimate
        promoted, reason, intervals = _first_model_gates(holdout, gates)
    else:
        promoted, reason, intervals = _against_champion(
            name, champion_version, holdout, gates, figures
        )
    decision = Decision(
        promoted, reason, str(challenger.version), champion_version, figures, intervals
    )
    _write_tags(client, name, decision, challenger.run_id, gates)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, challenger.version)
        client.delete_registered_model_alias(name, CHALLENGER_ALIAS)
    return decision


def _against_champion(
    name: str, champion_version: str, holdout: pd.DataFrame, gates: Gates,
    figures: dict[str, float],
) -> tuple[bool, str, dict[str, Interval]]:  # fmt: skip
    """The challenge: both models on the holdout rows the champion did not train on."""
    champion = MlflowClient().get_model_version(name, champion_version)
    rows = unseen_by(holdout, _artifact(champion.run_id, TRAINING_KEYS_ARTIFACT))
    positives = int(rows[LABEL].sum())
    figures["compared_rows"] = float(len(rows))
    if positives < MIN_COMPARE_POSITIVES or positives == len(rows):
        return (
            False,
            (
                f"only {len(rows)} holdout rows ({positives} positive) were not used to train "
                f"champion v{champion_version}; too few to compare, so the champion stays"
            ),
            {},
        )
    try:
        theirs = score_with(name, champion_version, rows)
    except ScoringError as exc:
        return (
            False,
            (
                f"champion v{champion_version} cannot score the challenger's holdout ({exc}); "
                "compare them by hand before moving @champion"
            ),
            {},
        )
    y = rows[LABEL].to_numpy()
    figures["champion_pr_auc"] = pr_auc(y, theirs)
    figures["challenger_pr_auc"] = pr_auc(y, rows[MODEL_SCORE])
    return _challenge_gates(rows, theirs, gates)
