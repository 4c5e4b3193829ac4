"""Reviewer case reports: one self-contained HTML page per store, readable offline.

A report shows why a store looks risky before a test-buyer spends money on it: the score,
its band and the model; the reasons both ways with a waterfall of the log-odds; where the
store's key features sit among genuine stores; evidence from the store's own history (its
cheapest listings against the brands' reference prices, counterfeit disputes, orders shipped
from another region than declared, its busiest review day, replica words in titles or image
text, reviews that say "fake"); its linked stores (a small network picture, their labels and
scores); its score over the last six months; and the confirmed counterfeit stores most
similar to it in explanation space. Pages carry inline CSS and SVG only: no scripts, nothing
fetched.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.spec import AS_OF, KEY, FeatureSpec
from serving.online import band

HISTORY_MONTHS = 6
SIMILAR_STORES = 5
LINKED_SHOWN = 24
EVIDENCE_ROWS = 5
REPORT_RISK_REASONS = 8
REPORT_MITIGATING_REASONS = 5


@dataclass
class StoreCase:
    """Everything one report shows.

    Attributes:
        store_id: The store.
        as_of: The time its features are as of.
        score: Calibrated probability.
        explanation: ``base_value``, ``raw_score``, ``reasons``, ``mitigating``, ``groups``.
        history: ``as_of`` and ``score`` at monthly dates.
        evidence: Named tables from the store's own history.
        linked: Linked stores with link kinds, known label and score.
        similar: Most similar confirmed counterfeit stores (``distance``, ``score``).
    """

    store_id: str
    as_of: pd.Timestamp
    score: float
    explanation: dict
    history: pd.DataFrame
    evidence: dict[str, pd.DataFrame] = field(default_factory=dict)
    linked: pd.DataFrame = field(default_factory=pd.DataFrame)
    similar: pd.DataFrame = field(default_factory=pd.DataFrame)


def build_cases(
    model,
    model_uri: str,
    histories: Path,
    store_ids: list[str],
    built: tuple[pd.DataFrame, FeatureSpec] | None = None,
    scores: pd.Series | None = None,
):
    """The cases of ``store_ids`` (known ones), and the ids the histories do not have.

    Args:
        model: A loaded spotcheck pyfunc model.
        model_uri: Its URI, for the page.
        histories: The histories directory.
        store_ids: Stores to report on.
        built: The histories' feature table as of their end and its spec, if the caller
            has built it already (``spotcheck queue --reports``); built here otherwise.
        scores: Every store's calibrated score on that table by store id, if the caller
            keeps them (the service, per snapshot: 1.7 s of the report at 60,000 stores);
            computed here otherwise.

    Returns:
        ``(cases, unknown_ids)``.
    """
    from features.build import build_feature_table
    from features.contract.histories import open_histories
    from features.scoring.model import scorer_of
    from features.settings import duckdb_connection
    from serving.batch import check_model_spec

    table, spec = built if built is not None else build_feature_table(Path(histories))
    check_model_spec(model, spec)
    scorer = scorer_of(model)
    known_ids = set(table[KEY].astype(str))
    unknown = [s for s in store_ids if s not in known_ids]
    wanted = [s for s in dict.fromkeys(store_ids) if s in known_ids]
    if not wanted:
        return [], unknown
    con = open_histories(histories, duckdb_connection())
    if scores is None:
        scores = table_scores(scorer, table)
    labels = (
        con.execute("SELECT store_id, is_counterfeit FROM labels ORDER BY labeled_at")
        .df()
        .drop_duplicates(KEY, keep="last")
        .set_index(KEY)["is_counterfeit"]
    )
    rows = table.set_index(table[KEY].astype(str))
    explained = scorer.score_records(
        [rows.loc[s, scorer.spec.names].to_dict() for s in wanted],
        REPORT_RISK_REASONS,
        REPORT_MITIGATING_REASONS,
    )
    similar = _similar_counterfeit(scorer, table, labels, wanted)
    links = _current_links(con, pd.Timestamp(table[AS_OF].max()))
    history = _score_history(scorer, histories, rows, wanted, con)
    cases = []
    for store, result in zip(wanted, explained, strict=True):
        as_of = pd.Timestamp(rows.loc[store, AS_OF])
        cases.append(
            StoreCase(
                store_id=store,
                as_of=as_of,
                score=result["score"],
                explanation={"model": model_uri, **result},
                history=history[history[KEY] == store][[AS_OF, "score"]],
                evidence=_evidence(con, store, as_of),
                linked=_linked(links, store, labels, scores),
                similar=similar.get(store, pd.DataFrame()),
            )
        )
    return cases, unknown


def table_scores(scorer, table: pd.DataFrame) -> pd.Series:
    """Calibrated score of every store of a feature table, by store id (no reasons)."""
    from features.scoring.calibrator import apply_calibrator
    from features.scoring.encoding import encode_features

    raw = scorer.booster_.predict(
        encode_features(table, scorer.spec, scorer.levels_), raw_score=True
    )
    return pd.Series(apply_calibrator(scorer.calibrator_, raw), index=table[KEY].astype(str))


def _current_links(con, as_of: pd.Timestamp) -> pd.DataFrame:
    from features.links.derive import login_links
    from serving.queue import current_links

    return current_links(login_links(con), as_of)


def _linked(links: pd.DataFrame, store: str, labels: pd.Series, scores: pd.Series) -> pd.DataFrame:
    """The store's linked stores: kinds shared, known label, score; riskiest first."""
    mine = links[links[KEY].astype(str) == store]
    if mine.empty:
        return pd.DataFrame(columns=["store_id", "shared", "label", "score"])
    grouped = mine.groupby(mine["linked_store_id"].astype(str))["kind"].agg(
        lambda kinds: ", ".join(sorted(set(kinds)))
    )
    out = pd.DataFrame({"store_id": grouped.index, "shared": grouped.to_numpy()})
    out["label"] = out["store_id"].map(labels).map({1: "counterfeit", 0: "genuine"})
    out["score"] = out["store_id"].map(scores)
    return out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def _similar_counterfeit(scorer, table, labels: pd.Series, wanted: list[str]) -> dict:
    """Per wanted store, the confirmed counterfeit stores nearest in explanation space.

    Explanation space: each store's SHAP contributions (log-odds per feature), so two stores
    are close when the same facts push their scores the same way, whatever their raw units.
    """
    from features.scoring.calibrator import apply_calibrator
    from features.scoring.encoding import encode_features

    confirmed = labels[labels == 1].index.astype(str)
    ids = table[KEY].astype(str)
    pool = table[ids.isin(confirmed)]
    targets = table.set_index(ids).loc[wanted].reset_index(drop=True)
    if pool.empty:
        return {}
    contributions = scorer.contributions(encode_features(pool, scorer.spec, scorer.levels_))
    contributions = contributions[:, :-1]
    mine = scorer.contributions(encode_features(targets, scorer.spec, scorer.levels_))[:, :-1]
    pool_ids = pool[KEY].astype(str).to_numpy()
    pool_raw = contributions.sum(axis=1)
    out = {}
    for i, store in enumerate(wanted):
        distance = np.sqrt(((contributions - mine[i]) ** 2).sum(axis=1))
        distance[pool_ids == store] = np.inf  # not itself
        nearest = np.argsort(distance, kind="stable")[:SIMILAR_STORES]
        nearest = nearest[np.isfinite(distance[nearest])]
        out[store] = pd.DataFrame(
            {
                "store_id": pool_ids[nearest],
                "distance": distance[nearest],
                "score": apply_calibrator(scorer.calibrator_, pool_raw[nearest]),
            }
        )
    return out


def _score_history(scorer, histories, rows, wanted: list[str], con) -> pd.DataFrame:
    """Scores at the end and at monthly steps back, while the store was open."""
    from features.build import features_for_keys

    keys = []
    for store in wanted:
        end = pd.Timestamp(rows.loc[store, AS_OF])
        opened = con.execute("SELECT opened_at FROM stores WHERE store_id = ?", [store]).fetchone()[
            0
        ]
        for months in range(HISTORY_MONTHS - 1, -1, -1):
            when = end - pd.DateOffset(months=months)
            if pd.Timestamp(opened).tz_localize(None) < when:
                keys.append({KEY: store, AS_OF: when})
    frame, _ = features_for_keys(histories, pd.DataFrame(keys), con=con, validate=False)
    scored = scorer.score_frame(frame, 0, 0)
    return pd.DataFrame(
        {KEY: frame[KEY].astype(str), AS_OF: frame[AS_OF], "score": scored["score"]}
    )


def _evidence(con, store: str, as_of: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Tables from the store's own history before ``as_of``, each at most a few rows."""
    from features.store.vocabulary import fake_review_pattern, harmless_pattern, replica_pattern

    args = [store, as_of]
    out = {
        "cheapest listings against the brand's reference price": con.execute(
            f"""SELECT listed_at, brand, title, price, reference_price,
                       round(price / reference_price, 3) AS share_of_reference
                FROM listings WHERE store_id = ? AND listed_at < ? AND reference_price > 0
                ORDER BY price / reference_price, listing_id LIMIT {EVIDENCE_ROWS}""",
            args,
        ).df(),
        "recent counterfeit disputes": con.execute(
            f"""SELECT opened_at, order_id FROM disputes
                WHERE store_id = ? AND opened_at < ? AND reason = 'counterfeit'
                ORDER BY opened_at DESC, dispute_id LIMIT {EVIDENCE_ROWS}""",
            args,
        ).df(),
        "orders shipped from another region than declared": con.execute(
            f"""SELECT o.ordered_at, o.order_id, o.ship_from_region, s.declared_region
                FROM orders o JOIN stores s USING (store_id)
                WHERE o.store_id = ? AND o.ordered_at < ?
                  AND o.ship_from_region <> s.declared_region
                ORDER BY o.ordered_at DESC, o.order_id LIMIT {EVIDENCE_ROWS}""",
            args,
        ).df(),
        "busiest review days": con.execute(
            """SELECT CAST(created_at AS DATE) AS day, count(*) AS reviews,
                       round(avg(rating), 2) AS mean_rating,
                       count(*) FILTER (WHERE rating = 5 AND length(text) < 25) AS short_5_star
                FROM reviews WHERE store_id = ? AND created_at < ?
                GROUP BY 1 ORDER BY reviews DESC, day LIMIT 3""",
            args,
        ).df(),
    }
    listings = con.execute(
        "SELECT listed_at, title, image_text FROM listings WHERE store_id = ? AND listed_at < ?"
        " ORDER BY listed_at DESC, listing_id",
        args,
    ).df()
    out["replica words in titles or image text"] = _matches(
        listings, ["title", "image_text"], replica_pattern(), harmless_pattern()
    )
    reviews = con.execute(
        "SELECT created_at, rating, text FROM reviews WHERE store_id = ? AND created_at < ?"
        " ORDER BY created_at DESC, review_id",
        args,
    ).df()
    out["reviews that say the goods are fake"] = _matches(reviews, ["text"], fake_review_pattern())
    return out


def _matches(frame: pd.DataFrame, columns: list[str], pattern: str, blank: str | None = None):
    """Rows whose text matches ``pattern`` (after blanking harmless phrases), with the words."""
    found = re.compile(pattern, re.IGNORECASE)
    harmless = re.compile(blank, re.IGNORECASE) if blank else None
    rows = []
    for row in frame.itertuples(index=False):
        words = set()
        for column in columns:
            text = getattr(row, column)
            if not isinstance(text, str):
                continue
            text = harmless.sub(" ", text) if harmless else text
            words |= {m.lower() for m in found.findall(text)}
        if words:
            rows.append({**row._asdict(), "words": ", ".join(sorted(words))})
        if len(rows) == EVIDENCE_ROWS:
            break
    return pd.DataFrame(rows)


def write_reports(cases: list[StoreCase], out: Path) -> list[Path]:
    """One ``STORE_ID.html`` per case in ``out``; each file appears only when complete."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory(dir=out, prefix=".reports-") as tmp:
        for case in cases:
            staged = Path(tmp) / f"{_safe_name(case.store_id)}.html"
            staged.write_text(report_html(case), encoding="utf-8")
        for case in cases:
            name = f"{_safe_name(case.store_id)}.html"
            shutil.move(Path(tmp) / name, out / name)
            paths.append(out / name)
    return paths


def _safe_name(store_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", store_id)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top;font-size:14px}th{background:#f3f3f3}td.n{text-align:right}
.band{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:bold}
.very-high{background:#b00020}.high{background:#e65100}.elevated{background:#f9a825}
.low{background:#2e7d32}.up{color:#b00020}.down{color:#2e7d32}figure{margin:0 0 1.5em}
"""


def report_html(case: StoreCase) -> str:
    """The case as one self-contained HTML page."""
    e = html.escape
    x = case.explanation
    label = band(case.score)
    sections = [
        f"<h1>Store {e(case.store_id)}</h1>",
        f'<p>Probability of selling counterfeits <b>{case.score:.3f}</b> <span class="band '
        f'{label.replace(" ", "-")}">{e(label)}</span> as of {e(str(case.as_of))} UTC; model '
        f"<code>{e(x['model'])}</code>. The probability is for stores like the labelled ones."
        "</p>",
        "<h2>Why: reasons both ways</h2>",
        f'<figure id="waterfall">{_waterfall_svg(x)}</figure>',
        _reasons_table("Raising the risk", x["reasons"], "up"),
        _reasons_table("Lowering the risk", x["mitigating"], "down"),
        "<h3>By feature group (log-odds)</h3>",
        _table(
            pd.DataFrame(
                {
                    "group": list(x["groups"]),
                    "contribution": [f"{v:+.3f}" for v in x["groups"].values()],
                }
            )
        ),
        "<h2>Evidence from the store's history</h2>",
    ]
    for title, frame in case.evidence.items():
        sections.append(f"<h3>{e(title)}</h3>")
        sections.append(_table(frame) if len(frame) else "<p>none</p>")
    sections.append(f"<h2>Linked stores ({len(case.linked)})</h2>")
    sections.append(
        "<p>Stores sharing a device, Wi-Fi network or IP with this one now.</p>"
        + f'<figure id="network">{_network_svg(case)}</figure>'
        + (_table(case.linked.head(LINKED_SHOWN)) if len(case.linked) else "<p>none</p>")
    )
    sections.append("<h2>Score over the last six months</h2>")
    sections.append(f'<figure id="history">{_history_svg(case.history)}</figure>')
    sections.append(_table(case.history))
    sections.append("<h2>Most similar confirmed counterfeit stores</h2>")
    sections.append(
        "<p>Nearest in explanation space: the same facts push their scores the same way.</p>"
        + (_table(case.similar) if len(case.similar) else "<p>none</p>")
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Store {e(case.store_id)}: case report</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def _reasons_table(title: str, reasons: list[dict], css: str) -> str:
    e = html.escape
    if not reasons:
        return f"<h3>{e(title)}</h3><p>none</p>"
    rows = "".join(
        f"<tr><td>{e(r['text'])}</td><td>{e(r['group'])}</td>"
        f"<td class=n>{_percentile(r['percentile'])}</td>"
        f"<td class='n {css}'>{r['contribution']:+.3f}</td><td class=n>{r['impact']}</td>"
        f"{_link_cell(r)}</tr>"
        for r in reasons
    )
    return (
        f"<h3>{e(title)}</h3><table><tr><th>reason</th><th>group</th>"
        "<th>percentile among genuine stores</th><th>log-odds</th><th>impact (0-5)</th>"
        f"<th>linked / known counterfeit</th></tr>{rows}</table>"
    )


def _percentile(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _link_cell(reason: dict) -> str:
    if "linked_stores" not in reason:
        return "<td></td>"
    return f"<td class=n>{reason['linked_stores']} / {reason['known_counterfeit']}</td>"


def _table(frame: pd.DataFrame) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(_cell(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _waterfall_svg(explanation: dict) -> str:
    """Bars from the base value through each reason (and the rest) to the raw margin."""
    e = html.escape
    steps = [(r["feature"], r["contribution"]) for r in explanation["reasons"]]
    steps += [(r["feature"], r["contribution"]) for r in explanation["mitigating"]]
    shown = sum(c for _, c in steps)
    rest = explanation["raw_score"] - explanation["base_value"] - shown
    steps.append(("all other features", rest))
    levels = [explanation["base_value"]]
    for _, c in steps:
        levels.append(levels[-1] + c)
    low, high = min(levels), max(levels)
    span = (high - low) or 1.0
    # Room for the longest feature name on the left (~7 px a character at 12 px) and for
    # the value printed after the right-most bar, so nothing is clipped by the <svg> box.
    row, bars = 22, 400
    left = max(160, 7 * max(len(name) for name, _ in steps) + 12)
    width = left + bars + 50
    scale = bars / span

    def xpos(v: float) -> float:
        return left + (v - low) * scale

    parts = []
    for i, (name, c) in enumerate(steps):
        start, end = levels[i], levels[i + 1]
        colour = "#b00020" if c > 0 else "#2e7d32"
        y = 10 + i * row
        parts.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" font-size="12">{e(name)}</text>'
            f'<rect x="{min(xpos(start), xpos(end)):.1f}" y="{y}" height="{row - 6}" '
            f'width="{max(abs(xpos(end) - xpos(start)), 1):.1f}" fill="{colour}"/>'
            f'<text x="{max(xpos(start), xpos(end)) + 4:.1f}" y="{y + 14}" font-size="11">'
            f"{c:+.2f}</text>"
        )
    height = 10 + len(steps) * row + 30
    base, raw = explanation["base_value"], explanation["raw_score"]
    parts.append(
        f'<text x="{left}" y="{height - 8}" font-size="12">base {base:+.2f} → raw margin '
        f"{raw:+.2f} (log-odds)</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'aria-label="waterfall of the log-odds">{"".join(parts)}</svg>'
    )


def _network_svg(case: StoreCase) -> str:
    """The store in the middle, its linked stores around it, coloured by known label."""
    e = html.escape
    shown = case.linked.head(LINKED_SHOWN)
    size, centre, radius = 360, 180, 130
    parts = []
    for i, row in enumerate(shown.itertuples(index=False)):
        angle = 2 * math.pi * i / max(len(shown), 1)
        x, y = centre + radius * math.cos(angle), centre + radius * math.sin(angle)
        colour = {"counterfeit": "#b00020", "genuine": "#2e7d32"}.get(row.label, "#9e9e9e")
        parts.append(
            f'<line x1="{centre}" y1="{centre}" x2="{x:.1f}" y2="{y:.1f}" stroke="#bbb"/>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="{colour}">'
            f"<title>{e(str(row.store_id))}: {e(str(row.label))}, score {_cell(row.score)}"
            f"</title></circle>"
        )
    parts.append(f'<circle cx="{centre}" cy="{centre}" r="14" fill="#1565c0"/>')
    parts.append(
        f'<text x="{centre}" y="{centre + 32}" text-anchor="middle" font-size="12">'
        f"{e(case.store_id)}</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{size}" height="{size}" '
        f'aria-label="linked stores">{"".join(parts)}</svg>'
    )


def _history_svg(history: pd.DataFrame) -> str:
    """The score at monthly dates as a line on a 0-1 scale."""
    width, height, pad = 420, 160, 30
    scores = history["score"].to_numpy(dtype=float)
    n = len(scores)
    points = [
        (pad + (width - 2 * pad) * (i / max(n - 1, 1)), height - pad - (height - 2 * pad) * s)
        for i, s in enumerate(scores)
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#1565c0"/>' for x, y in points)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'aria-label="score history"><rect x="{pad}" y="{pad}" width="{width - 2 * pad}" '
        f'height="{height - 2 * pad}" fill="none" stroke="#ccc"/>'
        f'<polyline points="{line}" fill="none" stroke="#1565c0" stroke-width="2"/>{dots}'
        f'<text x="4" y="{pad + 4}" font-size="10">1.0</text>'
        f'<text x="4" y="{height - pad}" font-size="10">0.0</text></svg>'
    )


def cases_summary(cases: list[StoreCase]) -> str:
    """One JSON line per case (store, score, band) for logs."""
    return "\n".join(
        json.dumps({"store_id": c.store_id, "score": round(c.score, 4), "band": band(c.score)})
        for c in cases
    )
