"""Model registry: register new versions as ``@challenger`` and promote through gates.

Gates, all evaluated on the challenger's own holdout (the most recent labels it never saw):

* the first model becomes ``@champion`` only if its PR-AUC beats every baseline of its run;
* a challenger replaces the champion only if its PR-AUC is not lower than the champion's on
  that same holdout;
* in both cases its expected calibration error must stay at or under the threshold.

The decision and its figures are written as tags on both versions; a rejected challenger
stays registered (and keeps its alias) so it can be inspected.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.scoring import ScoringError
from features.scoring.encoding import model_input
from features.scoring.model import model_spec
from features.tracking import CHALLENGER_ALIAS, CHAMPION_ALIAS
from training import TrainingError
from training.baselines import LOGISTIC, PRICE_RULE
from training.dataset import LABEL
from training.evaluate import evaluate_probabilities
from training.tracking import HOLDOUT_ARTIFACT


class PromotionError(TrainingError):
    """Promotion cannot be decided (no such model, no challenger, missing holdout)."""


@dataclass(frozen=True)
class Decision:
    """Outcome of ``promote``.

    Attributes:
        promoted: True if the challenger is (now) the champion.
        reason: Plain-language reason for the decision.
        challenger_version: Version that was ``@challenger``.
        champion_version: Version that was ``@champion`` before, if any.
        figures: The numbers the gates compared.
    """

    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None
    figures: dict[str, float] = field(default_factory=dict)


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


def load_holdout(run_id: str) -> pd.DataFrame:
    """The test rows (features + labels) stored with a training run."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=HOLDOUT_ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            raise PromotionError(f"run {run_id} has no holdout artifact: {exc}") from exc
        return pd.read_parquet(Path(path))


def evaluate_version(name: str, version: str, holdout: pd.DataFrame) -> dict[str, float]:
    """Score the holdout with a registered version and compute its test metrics.

    Raises:
        ScoringError: The version needs feature columns the holdout lacks.
    """
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    spec = model_spec(model)
    scored = model.predict(model_input(holdout, spec))
    return evaluate_probabilities(
        holdout[LABEL].to_numpy(), scored["raw_score"].to_numpy(), scored["score"].to_numpy()
    )


def _first_model_gates(
    challenger: dict[str, float], baselines: dict[str, float], ece_threshold: float
) -> tuple[bool, str]:
    beaten = {n: v for n, v in baselines.items() if challenger["pr_auc"] > v}
    if len(beaten) < len(baselines):
        lost = ", ".join(f"{n} {v:.4f}" for n, v in baselines.items() if n not in beaten)
        return False, (
            f"first model does not beat the baselines: PR-AUC {challenger['pr_auc']:.4f} vs {lost}"
        )
    if challenger["ece"] > ece_threshold:
        return False, f"calibration error {challenger['ece']:.4f} exceeds {ece_threshold}"
    against = ", ".join(f"{n} {v:.4f}" for n, v in baselines.items()) or "no baseline logged"
    return True, f"first model beats the baselines: PR-AUC {challenger['pr_auc']:.4f} vs {against}"


def _challenge_gates(
    challenger: dict[str, float], champion: dict[str, float], ece_threshold: float
) -> tuple[bool, str]:
    if challenger["pr_auc"] < champion["pr_auc"]:
        return False, (
            f"challenger PR-AUC {challenger['pr_auc']:.4f} is lower than the champion's "
            f"{champion['pr_auc']:.4f} on the challenger's holdout"
        )
    if challenger["ece"] > ece_threshold:
        return False, f"calibration error {challenger['ece']:.4f} exceeds {ece_threshold}"
    return True, (
        f"challenger PR-AUC {challenger['pr_auc']:.4f} >= champion {champion['pr_auc']:.4f}, "
        f"calibration error {challenger['ece']:.4f} <= {ece_threshold}"
    )


def _baselines(client: MlflowClient, run_id: str) -> dict[str, float]:
    metrics = client.get_run(run_id).data.metrics
    return {n: metrics[f"{n}.pr_auc"] for n in (PRICE_RULE, LOGISTIC) if f"{n}.pr_auc" in metrics}


def _write_tags(
    client: MlflowClient, name: str, decision: Decision, holdout_run: str, threshold: float
) -> None:
    common = {
        "promotion.decision": "promoted" if decision.promoted else "rejected",
        "promotion.reason": decision.reason,
        "promotion.timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion.holdout_run_id": holdout_run,
        "promotion.challenger_version": decision.challenger_version,
        "promotion.champion_version": decision.champion_version or "none",
        "promotion.ece_threshold": str(threshold),
        **{f"promotion.{k}": f"{v:.6f}" for k, v in decision.figures.items()},
    }
    roles = {decision.challenger_version: "challenger"}
    if decision.champion_version:
        roles[decision.champion_version] = "champion"
    for version, role in roles.items():
        other = decision.champion_version if role == "challenger" else decision.challenger_version
        tags = {**common, "promotion.role": role, "promotion.compared_version": other or "none"}
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)


def promote(client: MlflowClient, name: str, ece_threshold: float) -> Decision:
    """Decide whether ``@challenger`` becomes ``@champion`` and record the decision.

    Args:
        client: MLflow client on the registry.
        name: Registered model name.
        ece_threshold: Largest expected calibration error a champion may have.

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
    mine = evaluate_version(name, challenger.version, holdout)
    figures = {"challenger_pr_auc": mine["pr_auc"], "challenger_ece": mine["ece"]}
    if champion_version is None:
        baselines = _baselines(client, challenger.run_id)
        figures.update({f"baseline_{n}_pr_auc": v for n, v in baselines.items()})
        promoted, reason = _first_model_gates(mine, baselines, ece_threshold)
    else:
        try:
            theirs = evaluate_version(name, champion_version, holdout)
        except ScoringError as exc:
            theirs = None
            promoted, reason = (
                False,
                (
                    f"champion v{champion_version} cannot score the challenger's holdout ({exc}); "
                    "compare them by hand before moving @champion"
                ),
            )
        if theirs is not None:
            figures.update({"champion_pr_auc": theirs["pr_auc"], "champion_ece": theirs["ece"]})
            promoted, reason = _challenge_gates(mine, theirs, ece_threshold)
    decision = Decision(promoted, reason, str(challenger.version), champion_version, figures)
    _write_tags(client, name, decision, challenger.run_id, ece_threshold)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, challenger.version)
        client.delete_registered_model_alias(name, CHALLENGER_ALIAS)
    return decision
