"""The spot-check queue: which stores to test-buy next, rings grouped, exploration recorded.

From the scored stores (``serving.batch.score_stores``) the queue leaves out stores already
labelled, groups stores into rings (connected through devices, Wi-Fi or IPs they share now)
so the budget is not spent on five fronts of one operation, and optionally spends a share of
the budget on a uniform random draw whose selection probabilities are recorded, so that the
model can later be evaluated without the bias of only ever checking what it ranked high.
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
QUEUE_COLUMNS = [
    "pick", "store_id", "score", "rank", "selection", "selection_probability", "ring_id",
    "ring_size", "reason_1", "reason_2", "reason_3", "reasons", "mitigating",
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
    """

    budget: int
    per_ring: int = 1
    explore: float = 0.0
    seed: int = 0
    max_ring_size: int = DEFAULT_MAX_RING_SIZE

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ServingError(f"budget must be at least 1 store, got {self.budget}")
        if self.per_ring < 1:
            raise ServingError(f"per-ring limit must be at least 1, got {self.per_ring}")
        if not 0.0 <= self.explore <= 1.0:
            raise ServingError(f"explore must be a share between 0 and 1, got {self.explore}")
        if self.max_ring_size < 2:
            raise ServingError(f"max ring size must be at least 2, got {self.max_ring_size}")

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
    """

    picks: pd.DataFrame
    rings: pd.DataFrame
    eligible: int
    labelled_left_out: int

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
    model = _model_picks(candidates, plan.budget - plan.explore_picks, plan.per_ring)
    model = model.assign(selection=MODEL_PICK, selection_probability=1.0)
    rest = candidates[~candidates[KEY].isin(model[KEY])]
    explore = _random_picks(rest, plan.explore_picks, plan.seed)
    picks = pd.concat([model, explore], ignore_index=True)
    picks.insert(0, "pick", range(1, len(picks) + 1))
    return Queue(
        picks=picks[QUEUE_COLUMNS],
        rings=_ring_summary(table, picks, labels),
        eligible=len(candidates),
        labelled_left_out=int(is_labelled.sum()),
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


def _random_picks(rest: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """A uniform draw without replacement; each store's inclusion probability is recorded."""
    count = min(count, len(rest))
    if count <= 0:
        return rest.head(0).assign(selection=EXPLORE_PICK, selection_probability=0.0)
    chosen = np.random.default_rng(seed).choice(len(rest), size=count, replace=False)
    drawn = rest.iloc[np.sort(chosen)]
    return drawn.assign(selection=EXPLORE_PICK, selection_probability=count / len(rest))


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
            f"<td>{e(pick.selection)} (p={pick.selection_probability:.3g})</td>"
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
