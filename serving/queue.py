"""The spot-check queue: which stores to test-buy next, rings grouped, exploration recorded.

From the scored stores (``serving.batch.score_stores``) the queue leaves out stores already
labelled, groups stores into rings (connected through devices, Wi-Fi or IPs they share now)
so the budget is not spent on five fronts of one operation, and optionally spends a share of
the budget on random picks whose inclusion probabilities are recorded, so that the model
can later be evaluated without the bias of only ever checking what it ranked high.

Exploration is stratified by default (after Henderson et al., 2022, on audit selection): of
the ``e`` exploration picks, half are drawn from the ``e`` stores the model would have bought
with the rest of its budget (the *budget edge*), which makes its precision at the budget
estimable; the other half are drawn from every other unlabelled store with probability
proportional to half its score and half a uniform share, which keeps every store's chance
above zero while spending the draws where counterfeit stores are. ``uniform`` draws all of
them uniformly from the stores the model did not pick.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.spec import KEY, FeatureSpec
from serving import ServingError

# A ring is 2-30 stores (the synthetic marketplace's rings are 3-30); a larger component is
# a chain of weak links (shared offices, NAT), not one operation, and is not grouped.
DEFAULT_MAX_RING_SIZE = 30
MODEL_PICK = "model"
EXPLORE_PICK = "explore"
STRATIFIED, UNIFORM = "stratified", "uniform"
EXPLORE_DESIGNS = (STRATIFIED, UNIFORM)
# The stratum a pick was drawn from: the model's own picks (probability 1), the budget
# edge, every other unlabelled store.
CERTAIN, EDGE, REST = "certain", "edge", "rest"
QUEUE_COLUMNS = [
    "pick", "store_id", "score", "rank", "selection", "selection_probability", "stratum",
    "ring_id", "ring_size", "reason_1", "reason_2", "reason_3", "reasons", "mitigating",
]  # fmt: skip


@dataclass(frozen=True)
class QueuePlan:
    """How to fill the queue.

    Attributes:
        budget: Stores to test-buy.
        per_ring: Model picks per ring at most.
        explore: Share of the budget drawn at random from the unpicked, unlabelled stores.
        seed: Seed of the random draw.
        max_ring_size: Components larger than this are not grouped as rings.
        explore_design: ``stratified`` (budget edge and score-weighted draw) or ``uniform``.
    """

    budget: int
    per_ring: int = 1
    explore: float = 0.0
    seed: int = 0
    max_ring_size: int = DEFAULT_MAX_RING_SIZE
    explore_design: str = STRATIFIED

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ServingError(f"budget must be at least 1 store, got {self.budget}")
        if self.per_ring < 1:
            raise ServingError(f"per-ring limit must be at least 1, got {self.per_ring}")
        if not 0.0 <= self.explore <= 1.0:
            raise ServingError(f"explore must be a share between 0 and 1, got {self.explore}")
        if self.max_ring_size < 2:
            raise ServingError(f"max ring size must be at least 2, got {self.max_ring_size}")
        if self.explore_design not in EXPLORE_DESIGNS:
            raise ServingError(
                f"exploration design must be one of {EXPLORE_DESIGNS}, got {self.explore_design!r}"
            )

    @property
    def explore_picks(self) -> int:
        """Picks drawn at random."""
        return int(round(self.explore * self.budget))


@dataclass(frozen=True)
class Queue:
    """A filled queue.

    Attributes:
        picks: ``QUEUE_COLUMNS``, model picks first in rank order, then the random draw.
        rings: One row per ring with a pick: ``ring_id``, ``ring_size``, ``picked``,
            ``expected_counterfeit`` (sum of its stores' scores), ``known_counterfeit``.
        eligible: Unlabelled stores the queue chose from.
        labelled_left_out: Scored stores left out because they are labelled.
        budget_edge: The stores the model would have bought with the budget spent on
            exploration (its picks ``budget - explore + 1`` to ``budget``), bought or not:
            with the model picks, the model's whole budget, whose precision the
            exploration estimates.
    """

    picks: pd.DataFrame
    rings: pd.DataFrame
    eligible: int
    labelled_left_out: int
    budget_edge: tuple[str, ...] = ()

    @property
    def expected_counterfeit(self) -> float:
        """Expected counterfeit stores among the picks: the sum of their probabilities."""
        return float(self.picks["score"].sum())


@dataclass(frozen=True)
class QueueInputs:
    """What a queue is built from.

    Attributes:
        features: Feature rows to score (one per store).
        links: Links valid at the features' time (``store_id``, ``linked_store_id``, ...).
        labels: Known labels (``store_id``, ``is_counterfeit``, maybe ``labeled_at``), or None.
        spec: The features' FeatureSpec when the code defined them (histories), else None.
    """

    features: pd.DataFrame
    links: pd.DataFrame
    labels: pd.DataFrame | None
    spec: FeatureSpec | None = None


def queue_inputs(
    histories: Path | None,
    features: Path | None,
    links: Path | None,
    labels: Path | None,
) -> QueueInputs:
    """Features, current links and known labels from a histories directory or a team's files.

    With histories: features as of their end, links derived from the logins, the labels
    table. With a feature file: ``features.byo.scoring_table`` and the given files.
    """
    from features.byo import check_labels, check_links, read_table, scoring_table
    from features.spec import AS_OF

    if histories is not None:
        from features.contract.histories import open_histories
        from features.links.derive import login_links
        from features.settings import duckdb_connection
        from serving.batch import features_from_histories

        table, spec = features_from_histories(histories)
        con = open_histories(histories, duckdb_connection(), tables=("logins", "labels"))
        known = con.execute("SELECT store_id, labeled_at, is_counterfeit FROM labels").df()
        as_of = pd.Timestamp(table[AS_OF].max()) if len(table) else None
        return QueueInputs(table, current_links(login_links(con), as_of), known, spec)
    table = scoring_table(features, links, labels)
    linked = pd.DataFrame(columns=[KEY, "linked_store_id"])
    if links is not None:
        linked = check_links(read_table(links, "links"), links)
        if "linked_at" in linked.columns:
            end = pd.to_datetime(linked["linked_at"], utc=True).max().tz_localize(None)
            linked = current_links(linked, end + pd.Timedelta(microseconds=1))
    known = None
    if labels is not None:
        known = check_labels(read_table(labels, "labels"), None, labels)
    return QueueInputs(table, linked, known)


def current_links(links: pd.DataFrame, as_of: pd.Timestamp | None) -> pd.DataFrame:
    """The links valid at ``as_of`` (all of them when either has no times)."""
    if as_of is None or "linked_at" not in links.columns:
        return links
    linked = pd.to_datetime(links["linked_at"], utc=True).dt.tz_localize(None)
    valid = linked < as_of
    if "unlinked_at" in links.columns:
        unlinked = pd.to_datetime(links["unlinked_at"], utc=True).dt.tz_localize(None)
        valid &= unlinked.isna() | (unlinked > as_of)
    return links[valid.to_numpy()]


def ring_ids(stores: pd.Series, links: pd.DataFrame, max_ring_size: int) -> pd.DataFrame:
    """Ring of every store: connected components through the links, 2 to ``max_ring_size``.

    Args:
        stores: Store ids.
        links: ``store_id``, ``linked_store_id`` (links to unknown stores are ignored).
        max_ring_size: Larger components are not rings.

    Returns:
        ``store_id``, ``ring_id`` (``ring-`` + the ring's smallest store id; None outside a
        ring) and ``ring_size`` (1 outside a ring), in ``stores`` order.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    index = pd.Index(stores.astype(str))
    a = index.get_indexer(links[KEY].astype(str))
    b = index.get_indexer(links["linked_store_id"].astype(str))
    known = (a >= 0) & (b >= 0)
    n = len(index)
    graph = coo_matrix((np.ones(int(known.sum())), (a[known], b[known])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)[component]
    frame = pd.DataFrame({KEY: index, "component": component, "size": sizes})
    first = frame.groupby("component")[KEY].transform("min")
    in_ring = (sizes >= 2) & (sizes <= max_ring_size)
    return pd.DataFrame(
        {
            KEY: stores.to_numpy(),
            "ring_id": np.where(in_ring, "ring-" + first, None),
            "ring_size": np.where(in_ring, sizes, 1),
        }
    )


def build_queue(
    scored: pd.DataFrame,
    rings: pd.DataFrame,
    labels: pd.DataFrame | None,
    plan: QueuePlan,
) -> Queue:
    """Fill the queue from ranked scores.

    Args:
        scored: ``serving.batch.score_stores`` output (ranked, with reasons).
        rings: ``ring_ids`` output for the same stores.
        labels: Known labels (``store_id``, ``is_counterfeit``); these stores are left out.
        plan: Budget, ring limit and exploration.
    """
    table = scored.merge(rings, on=KEY, how="left", validate="one_to_one")
    table["ring_size"] = table["ring_size"].fillna(1).astype("int64")
    labelled = set() if labels is None else set(labels[KEY].astype(str))
    is_labelled = table[KEY].astype(str).isin(labelled).to_numpy()
    candidates = table[~is_labelled].sort_values("rank", kind="stable")
    whole_budget = _model_picks(candidates, plan.budget, plan.per_ring)
    certain = plan.budget - plan.explore_picks
    model = whole_budget.head(certain)
    model = model.assign(selection=MODEL_PICK, selection_probability=1.0, stratum=CERTAIN)
    edge = whole_budget.iloc[certain:]
    rng = np.random.default_rng(plan.seed)
    if plan.explore_design == UNIFORM:
        rest = candidates[~candidates[KEY].isin(model[KEY])]
        explore = _weighted_picks(rest, np.ones(len(rest)), plan.explore_picks, REST, rng)
    else:
        explore = _stratified_picks(candidates, whole_budget, edge, plan.explore_picks, rng)
    picks = pd.concat([model, explore], ignore_index=True)
    picks.insert(0, "pick", range(1, len(picks) + 1))
    return Queue(
        picks=picks[QUEUE_COLUMNS],
        rings=_ring_summary(table, picks, labels),
        eligible=len(candidates),
        labelled_left_out=int(is_labelled.sum()),
        budget_edge=tuple(edge[KEY].astype(str)),
    )


def _model_picks(candidates: pd.DataFrame, count: int, per_ring: int) -> pd.DataFrame:
    """The best-ranked stores, at most ``per_ring`` from any one ring."""
    if count <= 0:
        return candidates.head(0)
    in_ring = candidates["ring_id"].notna()
    # Position of each store within its ring in rank order (0 = the ring's riskiest).
    within = candidates.groupby("ring_id", dropna=True).cumcount()
    allowed = ~in_ring | (within.reindex(candidates.index).fillna(0) < per_ring)
    return candidates[allowed.to_numpy()].head(count)


def _stratified_picks(
    candidates: pd.DataFrame,
    whole_budget: pd.DataFrame,
    edge: pd.DataFrame,
    count: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Half the draws from the budget edge, half score-weighted from every other store.

    The edge gets ``count // 2`` so that the rest always gets at least one draw: every
    unlabelled store keeps a chance above zero, which is what makes population estimates
    unbiased. The rest's weights are half the store's share of the scores, half a uniform
    share, so a wrong model cannot push a store's chance to nothing.
    """
    from_edge = _weighted_picks(edge, np.ones(len(edge)), count // 2, EDGE, rng)
    rest = candidates[~candidates[KEY].isin(whole_budget[KEY])]
    scores = rest["score"].to_numpy(dtype="float64")
    total = scores.sum()
    weights = 0.5 / max(len(rest), 1) + (0.5 * scores / total if total > 0 else 0.5 / len(rest))
    from_rest = _weighted_picks(rest, weights, count - len(from_edge), REST, rng)
    return pd.concat([from_edge, from_rest])


def _weighted_picks(
    pool: pd.DataFrame, weights: np.ndarray, count: int, stratum: str, rng: np.random.Generator
) -> pd.DataFrame:
    """``count`` stores drawn with inclusion probabilities proportional to ``weights``.

    Systematic sampling over a random order: every store's chance of being drawn is exactly
    its recorded ``selection_probability`` (capped at 1, the excess spread over the others),
    which is all an inverse-probability estimate needs.
    """
    count = min(count, len(pool))
    if count <= 0:
        return pool.head(0).assign(
            selection=EXPLORE_PICK, selection_probability=0.0, stratum=stratum
        )
    probability = inclusion_probabilities(np.asarray(weights, dtype="float64"), count)
    order = rng.permutation(len(pool))
    cumulative = np.cumsum(probability[order])
    points = rng.random() + np.arange(count)
    chosen = order[np.minimum(np.searchsorted(cumulative, points, side="right"), len(pool) - 1)]
    chosen = np.sort(chosen)
    return pool.iloc[chosen].assign(
        selection=EXPLORE_PICK, selection_probability=probability[chosen], stratum=stratum
    )


def inclusion_probabilities(weights: np.ndarray, count: int) -> np.ndarray:
    """Probabilities proportional to ``weights`` that sum to ``count``, none above 1.

    Args:
        weights: Non-negative weights, at least ``count`` of them positive.
        count: Stores to draw.

    Returns:
        One probability per weight.
    """
    probability = np.zeros(len(weights))
    capped = np.zeros(len(weights), dtype=bool)
    # Stores whose share would exceed 1 are taken for certain; the rest share what is left.
    while True:
        left = count - capped.sum()
        free = weights * ~capped
        probability = np.where(capped, 1.0, left * free / free.sum())
        over = probability > 1.0
        if not over.any():
            return probability
        capped |= over


def _ring_summary(
    table: pd.DataFrame, picks: pd.DataFrame, labels: pd.DataFrame | None
) -> pd.DataFrame:
    """Per ring with a pick: size, picks, expected counterfeit stores, known counterfeit."""
    picked_rings = picks["ring_id"].dropna().unique()
    members = table[table["ring_id"].isin(picked_rings)]
    known = pd.Series(0, index=members.index)
    if labels is not None:
        ordered = (
            labels.sort_values("labeled_at", kind="stable") if "labeled_at" in labels else labels
        )
        latest = ordered.drop_duplicates(KEY, keep="last").set_index(KEY)["is_counterfeit"]
        known = members[KEY].map(latest).fillna(0).astype(int)
    summary = (
        members.assign(known=known)
        .groupby("ring_id")
        .agg(
            ring_size=("ring_size", "first"),
            expected_counterfeit=("score", "sum"),
            known_counterfeit=("known", "sum"),
        )
        .reset_index()
    )
    summary["picked"] = summary["ring_id"].map(picks["ring_id"].value_counts()).astype(int)
    columns = ["ring_id", "ring_size", "picked", "expected_counterfeit", "known_counterfeit"]
    return summary[columns].sort_values("expected_counterfeit", ascending=False, kind="stable")


def write_queue(queue: Queue, out: Path, title: str, table_format: str = "parquet") -> list[Path]:
    """Write the queue, its rings and a self-contained HTML page into ``out``.

    Files: ``queue.parquet`` (or ``.csv``), ``rings.parquet`` (or ``.csv``), ``queue.html``.
    All are written to a temporary folder first and moved into place only once every one
    of them is complete, so a failure leaves no half-written file.

    Returns:
        The written paths.
    """
    if table_format not in ("parquet", "csv"):
        raise ServingError(f"queue format must be parquet or csv, got {table_format!r}")
    out.mkdir(parents=True, exist_ok=True)
    names = [f"queue.{table_format}", f"rings.{table_format}", "queue.html"]
    with tempfile.TemporaryDirectory(dir=out, prefix=".queue-") as tmp:
        staging = Path(tmp)
        for frame, name in ((queue.picks, names[0]), (queue.rings, names[1])):
            if table_format == "csv":
                frame.to_csv(staging / name, index=False)
            else:
                frame.to_parquet(staging / name, index=False)
        (staging / names[2]).write_text(queue_html(queue, title), encoding="utf-8")
        # Every file is complete before any is moved into place.
        for name in names:
            shutil.move(staging / name, out / name)
    return [out / name for name in names]


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}
.explore{background:#fff8e1}.ring{color:#8a2be2}ul{margin:0;padding-left:1.2em}
"""


def _selection_text(pick) -> str:
    """``model``, or where an exploration pick was drawn from."""
    if pick.stratum == EDGE:
        return "explore: the model's budget edge"
    if pick.stratum == REST:
        return "explore: score-weighted draw" if pick.selection_probability else "explore"
    return pick.selection


def queue_html(queue: Queue, title: str) -> str:
    """The queue as one self-contained HTML page (inline CSS, no scripts, no links out)."""
    e = html.escape
    rows = []
    for pick in queue.picks.itertuples(index=False):
        reasons = "".join(f"<li>{e(r['text'])}</li>" for r in json.loads(pick.reasons)[:3])
        ring = "" if pick.ring_id is None or pick.ring_id != pick.ring_id else pick.ring_id
        css = ' class="explore"' if pick.selection == EXPLORE_PICK else ""
        rows.append(
            f"<tr{css}><td class=n>{pick.pick}</td><td>{e(str(pick.store_id))}</td>"
            f"<td class=n>{pick.score:.3f}</td><td class=n>{pick.rank}</td>"
            f"<td>{e(_selection_text(pick))} (p={pick.selection_probability:.3g})</td>"
            f"<td class=ring>{e(ring)}{f' ({pick.ring_size} stores)' if ring else ''}</td>"
            f"<td><ul>{reasons}</ul></td></tr>"
        )
    ring_rows = "".join(
        f"<tr><td class=ring>{e(r.ring_id)}</td><td class=n>{r.ring_size}</td>"
        f"<td class=n>{r.picked}</td><td class=n>{r.expected_counterfeit:.2f}</td>"
        f"<td class=n>{r.known_counterfeit}</td></tr>"
        for r in queue.rings.itertuples(index=False)
    )
    explored = int((queue.picks["selection"] == EXPLORE_PICK).sum())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{e(title)}</h1>
<p><b>{len(queue.picks)}</b> stores to test-buy ({explored} drawn at random for unbiased
evaluation) out of {queue.eligible:,} unlabelled stores; {queue.labelled_left_out:,} labelled
stores left out. <b>Expected counterfeit stores found: {queue.expected_counterfeit:.1f}</b>
(the sum of the picks' probabilities).</p>
<table><thead><tr><th>pick</th><th>store</th><th>probability</th><th>model rank</th>
<th>selection</th><th>ring</th><th>top reasons</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Rings in the queue</h2>
<p>Stores joined through devices, Wi-Fi or IPs they share; the expected count is the sum of
the ring's stores' probabilities.</p>
<table><thead><tr><th>ring</th><th>stores</th><th>picked</th><th>expected counterfeit</th>
<th>known counterfeit</th></tr></thead><tbody>{ring_rows}</tbody></table>
</body></html>
"""
