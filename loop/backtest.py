"""The spot-check loop replayed month by month: which policy finds the most counterfeit stores.

Over the last M months of a synthetic marketplace, each policy test-buys K stores a month
among those active (an order in the last 30 days) and not yet labelled, knowing only what
was known at the month's start: features as of that date, the marketplace's own labels
dated before it, and the policy's own earlier test-buys. A test-buy reveals the store's
truth with the marketplace's label noise (``features.synth.plan.LABEL_FLIP``) and becomes a
label dated within the month.

Policies: ``model`` (the ring-aware queue of ``serving.queue`` with an exploration share;
retrained each month on every label known so far through ``training.train`` and promoted
through the registry's gates), ``rules`` (the seeds' price rule: lowest price against the
brand's reference first), ``complaints`` (most counterfeit disputes first) and ``random``.
Ties in a rule's score are broken at random (seeded), never by store id.

The features of every policy are built from the marketplace's labels only (the link
features count known counterfeit neighbours): a policy's own finds become training labels
and leave the candidate pool, but do not feed its features. That understates the model
policy a little, never the baselines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.spec import KEY
from loop import LoopError

POLICIES = ("model", "rules", "complaints", "random")
ACTIVE_FEATURE = "orders_30d"
COMPLAINT_FEATURE = "counterfeit_dispute_count"
PRICE_FEATURE = "price_to_reference_median"
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class BacktestPlan:
    """How to replay the loop.

    Attributes:
        months: Months replayed (the last ``months`` whole months of the histories).
        budget: Test-buys per policy and month.
        policies: Policies compared (``POLICIES``).
        explore: Share of the model policy's budget drawn at random (probabilities kept).
        retrain: ``monthly`` (retrain and promote at every month start) or ``never``
            (train once, before the first month).
        seed: Seed of every random choice (draws, tie-breaks, label noise, training).
        trials: Optuna trials per training (small: the loop retrains every month).
        model_name: Registered model the loop trains (not the production model's name).
        per_ring: Model picks per ring at most.
        explore_design: How the model queue explores (``serving.queue.EXPLORE_DESIGNS``).
    """

    months: int
    budget: int
    policies: tuple[str, ...] = POLICIES
    explore: float = 0.1
    retrain: str = "monthly"
    seed: int = 0
    trials: int = 2
    model_name: str = "spotcheck-backtest"
    per_ring: int = 1
    explore_design: str = "stratified"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.policies) - set(POLICIES))
        if unknown:
            raise LoopError(f"unknown policy {', '.join(unknown)}: choose from {POLICIES}")
        if not self.policies:
            raise LoopError("no policy to compare")
        if self.months < 1 or self.budget < 1:
            raise LoopError(f"months and budget must be at least 1: {self.months}, {self.budget}")
        if self.retrain not in ("monthly", "never"):
            raise LoopError(f"retrain must be monthly or never, got {self.retrain!r}")
        if not 0.0 <= self.explore < 1.0:
            raise LoopError(f"explore must be a share in [0, 1), got {self.explore}")
        if self.explore_design not in ("stratified", "uniform"):
            raise LoopError(
                f"explore design must be stratified or uniform, got {self.explore_design!r}"
            )


@dataclass
class Month:
    """One month of the replay: its window and the features known at its start."""

    index: int
    start: pd.Timestamp
    end: pd.Timestamp
    features: pd.DataFrame
    links: pd.DataFrame


@dataclass
class PolicyLog:
    """What one policy bought and learnt."""

    name: str
    labels: list[pd.DataFrame] = field(default_factory=list)
    picks: list[pd.DataFrame] = field(default_factory=list)

    def known(self) -> pd.DataFrame:
        """Its own test-buy labels so far."""
        columns = [KEY, "labeled_at", "is_counterfeit", "source"]
        return (
            pd.concat(self.labels, ignore_index=True)
            if self.labels
            else pd.DataFrame(columns=columns)
        )


def month_starts(end: pd.Timestamp, months: int) -> list[pd.Timestamp]:
    """Starts of the last ``months`` whole months before ``end``, and the end of the last."""
    last = pd.Timestamp(end).tz_localize(None).to_period("M").to_timestamp()
    return [last - pd.DateOffset(months=months - i) for i in range(months + 1)]


def candidates(features: pd.DataFrame, labelled: set[str]) -> pd.DataFrame:
    """Stores that can be test-bought: active (orders in the last 30 days), not labelled."""
    active = pd.to_numeric(features[ACTIVE_FEATURE], errors="coerce").fillna(0) > 0
    fresh = ~features[KEY].astype(str).isin(labelled)
    return features[(active & fresh).to_numpy()].reset_index(drop=True)


def rule_picks(scores: np.ndarray, pool: pd.DataFrame, k: int, rng: np.random.Generator):
    """The ``k`` highest scores; ties broken at random (a tie must not hide a ranking)."""
    order = np.lexsort((rng.random(len(pool)), -np.asarray(scores, dtype="float64")))
    chosen = pool.iloc[order[:k]]
    return pd.DataFrame({KEY: chosen[KEY].astype(str).to_numpy(), "selection": "rule",
                         "selection_probability": 1.0})  # fmt: skip


def random_picks(pool: pd.DataFrame, k: int, rng: np.random.Generator) -> pd.DataFrame:
    """``k`` stores drawn uniformly, each with its inclusion probability."""
    k = min(k, len(pool))
    chosen = rng.choice(len(pool), size=k, replace=False)
    probability = k / len(pool) if len(pool) else 0.0
    return pd.DataFrame({KEY: pool[KEY].astype(str).to_numpy()[chosen], "selection": "random",
                         "selection_probability": probability})  # fmt: skip


def test_buy(picks: pd.DataFrame, truth: pd.DataFrame, month: Month, rng, flip: float):
    """The picks' labels: the truth, flipped with probability ``flip``, dated in the month."""
    merged = picks.merge(truth, on=KEY, how="left", validate="one_to_one")
    if merged["truly_counterfeit"].isna().any():
        missing = merged.loc[merged["truly_counterfeit"].isna(), KEY].head(3).tolist()
        raise LoopError(f"the truth has no row for picked store(s) {missing}")
    true = merged["truly_counterfeit"].astype("int64").to_numpy()
    label = true ^ (rng.random(len(true)) < flip)
    span = (month.end - month.start).total_seconds()
    when = month.start + pd.to_timedelta(rng.random(len(true)) * span, unit="s")
    merged["is_counterfeit"] = label.astype("int64")
    merged["labeled_at"] = when.tz_localize("UTC") if when.tz is None else when
    merged["source"] = "test_buy"
    merged["month"] = month.index
    return merged


def _read_truth(path: Path) -> pd.DataFrame:
    from training.truth import read_truth

    truth = read_truth(path).rename(columns={"is_counterfeit": "truly_counterfeit"})
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if "ring_id" in table.columns:
        rings = table[[KEY, "ring_id"]].astype({KEY: "str"})
        truth = truth.merge(rings, on=KEY, how="left", validate="one_to_one")
    else:
        truth["ring_id"] = None
    return truth


def _month_data(histories: Path, start: pd.Timestamp, end: pd.Timestamp, index: int) -> Month:
    """Features and links as of the month's start (events before it only)."""
    from features.build import build_feature_table
    from features.contract.histories import open_histories
    from features.links.derive import login_links
    from features.settings import duckdb_connection
    from serving.queue import current_links

    features, _ = build_feature_table(histories, start, validate=False)
    con = open_histories(histories, duckdb_connection(), tables=("logins",))
    links = current_links(login_links(con), start)
    return Month(index, start, end, features.astype({KEY: "str"}), links)


def _labels_view(histories: Path, labels: pd.DataFrame, out: Path) -> Path:
    """A histories directory that is ``histories`` with ``labels`` as its labels table."""
    from features.io import write_table

    out.mkdir(parents=True, exist_ok=True)
    for item in histories.iterdir():
        if item.stem != "labels" and item.is_file():
            (out / item.name).unlink(missing_ok=True)
            (out / item.name).symlink_to(item.resolve())
    for old in out.glob("labels.*"):
        old.unlink()
    write_table(labels[[KEY, "labeled_at", "is_counterfeit", "source"]], out / "labels.parquet")
    return out


class ModelPolicy:
    """The ring-aware queue of the champion, retrained through the training code."""

    def __init__(self, plan: BacktestPlan, histories: Path, work: Path, storage: str) -> None:
        self.plan, self.histories, self.work, self.storage = plan, histories, work, storage
        self.model = None
        self.version: str | None = None
        self.trainings: list[dict] = []
        self.budget_edge: tuple[str, ...] = ()

    def retrain(self, labels: pd.DataFrame, month: Month) -> None:
        """Train on ``labels`` (all dated before the month), register, go through the gates."""
        from features.tracking import connect
        from training import registry
        from training.settings import load_settings
        from training.train import TrainRequest, train

        view = _labels_view(self.histories, labels, self.work / f"view-{month.index}")
        request = TrainRequest(histories=view, trials=self.plan.trials, seed=self.plan.seed,
                               model_name=self.plan.model_name, storage=self.storage,
                               study_name=f"{self.plan.model_name}-{month.index}")  # fmt: skip
        result = train(request)
        settings = load_settings()
        client = connect(settings.tracking_uri)
        gates = registry.Gates(
            settings.ece_threshold, settings.pr_auc_margin, settings.bootstrap_samples
        )
        decision = registry.promote(client, self.plan.model_name, gates)
        aliases = client.get_registered_model(self.plan.model_name).aliases
        # No champion yet (the first model failed the gates): the challenger is all there is.
        self.version = str(aliases.get("champion") or result.version)
        self._load()
        self.trainings.append({
            "month": month.index, "trained_version": result.version,
            "promoted": decision.promoted, "reason": decision.reason,
            "serving_version": self.version, "labels": len(labels),
            "holdout_pr_auc": result.metrics.get("model", {}).get("pr_auc"),
        })  # fmt: skip

    def _load(self) -> None:
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(f"models:/{self.plan.model_name}/{self.version}")

    def picks(self, month: Month, pool: pd.DataFrame, labelled: pd.DataFrame) -> pd.DataFrame:
        """The queue's picks among ``pool`` (model picks and random exploration).

        Also keeps the month's budget edge (``serving.queue.Queue.budget_edge``).
        """
        from serving.batch import score_stores
        from serving.queue import QueuePlan, build_queue, ring_ids

        scored = score_stores(self.model, pool, risk_k=1, mitigating_k=0)
        rings = ring_ids(month.features[KEY], month.links, QueuePlan(1).max_ring_size)
        plan = QueuePlan(self.plan.budget, self.plan.per_ring, self.plan.explore,
                         self.plan.seed + month.index,
                         explore_design=self.plan.explore_design)  # fmt: skip
        queue = build_queue(scored, rings, labelled, plan)
        columns = [KEY, "selection", "selection_probability", "stratum", "score"]
        picks = queue.picks[columns].copy()
        picks["model_version"] = self.version
        picks["in_budget_edge"] = picks[KEY].isin(queue.budget_edge)
        picks["explore_design"] = self.plan.explore_design
        self.budget_edge = queue.budget_edge
        return picks


def run_backtest(
    histories: Path,
    truth_path: Path,
    plan: BacktestPlan,
    work: Path,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Replay the loop; every pick, label and month's figures.

    Returns:
        ``picks`` (one row per test-buy), ``months`` (per policy and month), ``trainings``
        (the model policy's) and ``plan``.

    Raises:
        LoopError: Bad plan, or histories too short for the months asked.
    """
    from features.contract.histories import open_histories
    from features.synth.plan import LABEL_FLIP
    from training.settings import load_settings

    histories = Path(histories)
    truth = _read_truth(Path(truth_path))
    con = open_histories(histories, tables=("labels", "orders"))
    base = con.execute("SELECT store_id, labeled_at, is_counterfeit, source FROM labels").df()
    base["labeled_at"] = pd.to_datetime(base["labeled_at"], utc=True)
    end = pd.Timestamp(con.execute("SELECT max(ordered_at) FROM orders").fetchone()[0])
    starts = month_starts(end, plan.months)
    if base["labeled_at"].min() >= starts[0].tz_localize("UTC"):
        raise LoopError(f"no labels before the first month ({starts[0]:%Y-%m}): nothing to learn")
    rng = np.random.default_rng(plan.seed)
    logs = {name: PolicyLog(name) for name in plan.policies}
    storage = load_settings().study_storage
    model = ModelPolicy(plan, histories, work, storage) if "model" in plan.policies else None
    first: Month | None = None
    drift: list[dict] = []
    for i in range(plan.months):
        month = _month_data(histories, starts[i], starts[i + 1], i)
        first = first or month
        cutoff = month.start.tz_localize("UTC")
        base_known = base[base["labeled_at"] < cutoff]
        stores = f"{len(month.features):,} stores, {len(base_known)} marketplace labels"
        progress(f"month {i + 1}/{plan.months} ({month.start:%Y-%m}): {stores}")
        for name in plan.policies:
            log = logs[name]
            known = pd.concat([base_known, log.known()], ignore_index=True)
            pool = candidates(month.features, set(known[KEY].astype(str)))
            policy_rng = np.random.default_rng([plan.seed, i, POLICIES.index(name)])
            if name == "model":
                if i == 0 or plan.retrain == "monthly":
                    progress(f"  training on {len(known)} labels")
                    model.retrain(known, month)
                picks = model.picks(month, pool, known)
            elif name == "rules":
                picks = rule_picks(_price_scores(pool), pool, plan.budget, policy_rng)
            elif name == "complaints":
                scores = pd.to_numeric(pool[COMPLAINT_FEATURE], errors="coerce").fillna(0)
                picks = rule_picks(scores.to_numpy(), pool, plan.budget, policy_rng)
            else:
                picks = random_picks(pool, plan.budget, policy_rng)
            bought = test_buy(picks, truth, month, rng, LABEL_FLIP)
            bought["policy"] = name
            bought["candidates"] = len(pool)
            bought["candidates_counterfeit"] = int(
                truth[truth[KEY].isin(pool[KEY])]["truly_counterfeit"].sum()
            )
            if name == "model":
                # The truth of the model's whole budget needs its edge, bought or not.
                edge = truth[KEY].isin(model.budget_edge)
                bought["budget_edge_size"] = len(model.budget_edge)
                bought["budget_edge_counterfeit"] = int(truth.loc[edge, "truly_counterfeit"].sum())
            log.labels.append(bought[[KEY, "labeled_at", "is_counterfeit", "source"]])
            log.picks.append(bought)
        if i > 0:
            drift.append(month_drift(first, month, model))
    picks = pd.concat([p for log in logs.values() for p in log.picks], ignore_index=True)
    return {
        "plan": asdict(plan),
        "months": [str(s.date()) for s in starts],
        "picks": picks,
        "trainings": model.trainings if model else [],
        "drift": drift,
    }


def month_drift(first: Month, month: Month, model: ModelPolicy | None) -> dict:
    """Drift of a month's features from the first month's (``loop.drift``), with its model."""
    from features.scoring.model import scorer_of
    from loop.drift import DriftThresholds, drift_report

    scorer = scorer_of(model.model) if model is not None else None
    spec = scorer.spec if scorer is not None else None
    if spec is None:
        from features.build import feature_spec

        spec = feature_spec()
    report = drift_report(first.features, month.features, spec, DriftThresholds(), scorer)
    features = report["features"]
    drifting = features[features["drifts"]]
    reasons = report["reasons"]
    return {
        "month": month.index, "status": report["status"], "score_psi": report["score_psi"],
        "features_drifting": len(drifting),
        "top_drifting": ", ".join(drifting["feature"].head(5)),
        "reason_gaining": _extreme(reasons, "idxmax"),
        "reason_losing": _extreme(reasons, "idxmin"),
    }  # fmt: skip


def _extreme(reasons: pd.DataFrame | None, how: str) -> str | None:
    """The reason whose share grew (``idxmax``) or shrank (``idxmin``) most; None if none did."""
    if reasons is None or not (reasons["change"] != 0).any():
        return None
    change = reasons["change"]
    best = getattr(change, how)()
    return best if (change[best] > 0) == (how == "idxmax") and change[best] != 0 else None


def _price_scores(pool: pd.DataFrame) -> np.ndarray:
    from training.baselines import price_rule_scores

    return price_rule_scores(pool, PRICE_FEATURE)


def monthly_figures(picks: pd.DataFrame, cost_per_buy: float = 1.0) -> pd.DataFrame:
    """Per policy and month, and cumulative: finds, hit rate, rings reached, cost per find.

    ``found`` counts truly counterfeit stores bought; ``confirmed`` the test-buys that came
    back counterfeit (what the team sees, label noise included).
    """
    rows = []
    for (policy, month), group in picks.groupby(["policy", "month"], sort=True):
        rows.append({
            "policy": policy, "month": int(month), "buys": len(group),
            "found": int(group["truly_counterfeit"].sum()),
            "confirmed": int(group["is_counterfeit"].sum()),
            "rings": int(group.loc[group["truly_counterfeit"] == 1, "ring_id"].dropna().nunique()),
            "candidates": int(group["candidates"].iloc[0]),
            "candidates_counterfeit": int(group["candidates_counterfeit"].iloc[0]),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    table["hit_rate"] = table["found"] / table["buys"]
    table["cost_per_confirmed"] = np.where(
        table["confirmed"] > 0, cost_per_buy * table["buys"] / table["confirmed"].clip(lower=1),
        np.nan,
    )  # fmt: skip
    for column in ("buys", "found", "confirmed"):
        table[f"cumulative_{column}"] = table.groupby("policy")[column].cumsum()
    return table


def policy_ratios(picks: pd.DataFrame, against: str = "model", from_month: int = 1,
                  samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Counterfeit stores found by ``against`` over each other policy, from ``from_month`` on.

    A 95% percentile bootstrap interval: every (policy, month) cell's buys resampled with
    replacement (the found count of a cell of n buys with f finds is Binomial(n, f/n)).
    """
    rng = np.random.default_rng(seed)
    later = picks[picks["month"] >= from_month]
    cells = later.groupby(["policy", "month"])["truly_counterfeit"].agg(["size", "sum"])

    def resampled(policy: str) -> tuple[float, np.ndarray]:
        mine = cells.loc[policy]
        draws = rng.binomial(mine["size"].to_numpy()[:, None],
                             (mine["sum"] / mine["size"]).to_numpy()[:, None],
                             size=(len(mine), samples))  # fmt: skip
        return float(mine["sum"].sum()), draws.sum(axis=0).astype("float64")

    if against not in cells.index.get_level_values(0):
        return pd.DataFrame()
    ours, ours_draws = resampled(against)
    rows = []
    for other in sorted(set(cells.index.get_level_values(0)) - {against}):
        theirs, their_draws = resampled(other)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = ours_draws / their_draws
        # No interpolation: draws where the other policy found nothing are infinite ratios.
        ratios = np.where(np.isnan(ratios), np.inf, ratios)
        low, high = np.percentile(ratios, [2.5, 97.5], method="inverted_cdf")
        rows.append({"policy": other, "found": theirs, "model_found": ours,
                     "ratio": ours / theirs if theirs else np.inf,
                     "ci_low": float(low), "ci_high": float(high)})  # fmt: skip
    return pd.DataFrame(rows)


def selection_bias(picks: pd.DataFrame) -> pd.DataFrame:
    """The model policy's own view vs the inverse-probability estimate vs the truth, per month.

    Three figures of each month's candidates: the model's precision at the budget (the
    counterfeit share of the ``budget`` stores its queue would buy without exploring: its
    certain picks and its budget edge), the counterfeit share of all candidates, and the
    recall of that budget. ``own_picks`` treats the bought stores as if they were the
    population (what a team that only checks what its model ranks high would conclude);
    ``ipw`` weighs each bought store's label by one over its inclusion probability
    (``loop.estimate``), with a 95% interval; ``truth`` counts every candidate.
    """
    from loop.estimate import ht_total

    rows = []
    model = picks[picks["policy"] == "model"]
    for month, group in model.groupby("month", sort=True):
        n = int(group["candidates"].iloc[0])
        total_true = int(group["candidates_counterfeit"].iloc[0])
        labels = group["is_counterfeit"].to_numpy()
        certain = (group["stratum"] == "certain").to_numpy()
        in_budget = certain | group["in_budget_edge"].to_numpy(dtype=bool)
        budget = int(certain.sum() + group["budget_edge_size"].iloc[0])
        budget_true = int(group.loc[certain, "truly_counterfeit"].sum()
                          + group["budget_edge_counterfeit"].iloc[0])  # fmt: skip
        # The budget edge is its own stratum when exploration is stratified, part of the
        # uniform draw's otherwise.
        edge_stratum = "edge" if group["explore_design"].iloc[0] == "stratified" else "rest"
        in_queue = ht_total(group, labels * in_budget, ("certain", edge_stratum))
        everyone = ht_total(group, labels)
        # Shares: an interval past 0 or 1 says no more than one cut there.
        low, high = np.clip(in_queue.interval(budget), 0.0, 1.0)
        prevalence_low, prevalence_high = np.clip(everyone.interval(n), 0.0, 1.0)
        own_positives = max(int(labels.sum()), 1)
        rows.append({
            "month": int(month), "budget": budget, "candidates": n,
            "precision_own_picks": float(labels[certain].mean()),
            "precision_ipw": in_queue.total / budget,
            "precision_ipw_low": low, "precision_ipw_high": high,
            "precision_truth": budget_true / budget,
            "prevalence_own_picks": float(labels.mean()),
            "prevalence_ipw": everyone.total / n,
            "prevalence_ipw_low": prevalence_low, "prevalence_ipw_high": prevalence_high,
            "prevalence_truth": total_true / n,
            "recall_own_picks": float(labels[in_budget].sum() / own_positives),
            "recall_ipw": in_queue.total / everyone.total if everyone.total else np.nan,
            "recall_truth": budget_true / total_true if total_true else np.nan,
            "exploration_buys": int((~certain).sum()),
            "exploration_found": int(group.loc[~certain, "truly_counterfeit"].sum()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def pooled_bias(bias: pd.DataFrame, from_month: int = 1) -> dict:
    """The precision at the budget and the prevalence pooled over months, estimate vs truth.

    Months are independent draws, so their estimated totals and variances add up.
    """
    later = bias[bias["month"] >= from_month]
    if later.empty:
        return {}
    pooled: dict = {"months": len(later)}
    for figure, size in (("precision", "budget"), ("prevalence", "candidates")):
        weight = later[size].to_numpy(dtype="float64")
        ipw, truth = later[f"{figure}_ipw"], later[f"{figure}_truth"]
        low, high = later[f"{figure}_ipw_low"], later[f"{figure}_ipw_high"]
        estimate = float((ipw * weight).sum() / weight.sum())
        half = np.sqrt((((high - ipw) * weight) ** 2).sum()) / weight.sum()
        pooled[figure] = {
            "own_picks": float((later[f"{figure}_own_picks"] * weight).sum() / weight.sum()),
            "ipw": estimate, "ipw_low": max(estimate - half, 0.0),
            "ipw_high": min(estimate + half, 1.0),
            "truth": float((truth * weight).sum() / weight.sum()),
            "months_within_0.05": int(((ipw - truth).abs() <= 0.05).sum()),
            "months_truth_in_interval": int(((low <= truth) & (truth <= high)).sum()),
        }  # fmt: skip
        pooled[figure]["ipw_error"] = estimate - pooled[figure]["truth"]
    return pooled


def write_outputs(result: dict, out: Path) -> dict:
    """Write picks, figures, ratios, bias and summary (and the HTML page) into ``out``.

    Written to a temporary directory next to ``out`` and moved into place whole.
    """
    from loop.output import staged_directory
    from loop.report import backtest_html

    picks = result["picks"]
    figures = monthly_figures(picks)
    ratios = policy_ratios(picks, seed=result["plan"]["seed"])
    bias = selection_bias(picks)
    summary = {
        "plan": result["plan"], "months": result["months"], "trainings": result["trainings"],
        "totals": figures.groupby("policy")[["buys", "found", "confirmed"]].sum()
        .astype(int).to_dict(orient="index"),
        "from_second_month": ratios.to_dict(orient="records"),
        "ipw_from_second_month": pooled_bias(bias) if len(bias) else {},
        "drift": result.get("drift", []),
    }  # fmt: skip
    with staged_directory(out) as tmp:
        picks.to_parquet(tmp / "picks.parquet", index=False)
        figures.to_parquet(tmp / "months.parquet", index=False)
        ratios.to_parquet(tmp / "ratios.parquet", index=False)
        bias.to_parquet(tmp / "selection_bias.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        (tmp / "backtest.html").write_text(backtest_html(summary, figures, ratios, bias))
    return {"summary": summary, "figures": figures, "ratios": ratios, "bias": bias}
