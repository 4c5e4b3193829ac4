"""The backtest's HTML page: finds per month by policy (an inline SVG chart) and the tables.

Self-contained: no scripts, nothing fetched.
"""

from __future__ import annotations

import html

import pandas as pd

COLOURS = {"model": "#c0392b", "rules": "#2c7fb8", "complaints": "#7b3294", "random": "#888888"}


def cumulative_chart(figures: pd.DataFrame, width: int = 640, height: int = 300) -> str:
    """Cumulative counterfeit stores found per policy, month by month, as SVG."""
    months = sorted(figures["month"].unique())
    top = max(1, int(figures["cumulative_found"].max()))
    left, bottom, right, upper = 50, 30, 110, 15

    def x(m: int) -> float:
        span = max(len(months) - 1, 1)
        return left + (width - left - right) * months.index(m) / span

    def y(v: float) -> float:
        return height - bottom - (height - bottom - upper) * v / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'role="img" aria-label="cumulative counterfeit stores found">']  # fmt: skip
    parts.append(f'<line x1="{left}" y1="{y(0)}" x2="{width - right}" y2="{y(0)}" stroke="#444"/>')
    for m in months:
        parts.append(f'<text x="{x(m)}" y="{height - 10}" font-size="11" text-anchor="middle">'
                     f"month {m + 1}</text>")  # fmt: skip
    for tick in (0, top // 2, top):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4}" font-size="11" '
                     f'text-anchor="end">{tick}</text>')  # fmt: skip
    for policy, group in figures.groupby("policy"):
        colour = COLOURS.get(policy, "#333")
        points = " ".join(f"{x(m):.1f},{y(v):.1f}" for m, v in
                          zip(group["month"], group["cumulative_found"], strict=True))  # fmt: skip
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" '
                     f'points="{points}"/>')  # fmt: skip
        last = group.iloc[-1]
        parts.append(f'<text x="{x(last["month"]) + 6}" y="{y(last["cumulative_found"]) + 4}" '
                     f'font-size="12" fill="{colour}">{html.escape(policy)} '
                     f'{int(last["cumulative_found"])}</text>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-", border=0)


def _bias_text(pooled: dict, plan: dict) -> str:
    """What the selection-bias table shows, and the estimates pooled from the second month."""
    text = (
        "<p>Precision at the budget: the counterfeit share of the stores the model's queue "
        "would buy with the whole budget. Prevalence: the counterfeit share of the "
        "candidates. Recall: the share of the candidates' counterfeit stores in that budget. "
        "<i>own picks</i> treats the bought stores as the population; <i>ipw</i> weighs "
        f"each by one over its inclusion probability ({plan.get('explore_design', '')} "
        "exploration), with a 95% interval; <i>truth</i> counts every candidate.</p>"
    )
    if not pooled:
        return text
    rows = "".join(
        f"<tr><td>{figure}</td><td>{v['own_picks']:.3f}</td><td>{v['ipw']:.3f} "
        f"({v['ipw_low']:.3f}-{v['ipw_high']:.3f})</td><td>{v['truth']:.3f}</td>"
        f"<td>{v['months_within_0.05']} of {pooled['months']}</td></tr>"
        for figure, v in pooled.items()
        if isinstance(v, dict)
    )
    return text + (
        "<p>Pooled from the second month:</p><table><tr><th>figure</th><th>own picks</th>"
        "<th>ipw (95%)</th><th>truth</th><th>months within 0.05</th></tr>" + rows + "</table>"
    )


def backtest_html(summary: dict, figures: pd.DataFrame, ratios: pd.DataFrame,
                  bias: pd.DataFrame) -> str:  # fmt: skip
    """The whole page."""
    plan = summary["plan"]
    title = (f"Spot-check backtest: {plan['months']} months, {plan['budget']} test-buys per "
             "policy and month")  # fmt: skip
    trainings = pd.DataFrame(summary["trainings"])
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}")  # fmt: skip
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Months starting {', '.join(summary['months'][:-1])}; policies "
        f"{', '.join(plan['policies'])}; exploration share {plan['explore']}; retraining "
        f"{plan['retrain']}; seed {plan['seed']}.</p>",
        "<h2>Counterfeit stores found, cumulative</h2>",
        cumulative_chart(figures),
        "<h2>From the second month on: the model policy against the others</h2>",
        "<p>Ratio of truly counterfeit stores found, with a 95% bootstrap interval.</p>",
        _table(ratios) if len(ratios) else "<p>(no model policy)</p>",
        "<h2>Per month</h2>",
        _table(figures),
        "<h2>Selection bias: the model's own picks, the exploration estimate, the truth</h2>",
        _bias_text(summary.get("ipw_from_second_month") or {}, plan),
        _table(bias) if len(bias) else "<p>(no model policy)</p>",
        "<h2>Models</h2>",
        _table(trainings) if len(trainings) else "<p>(none)</p>",
    ]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(sections)}</body></html>"
    )


def drift_html(report: dict, title: str) -> str:
    """The drift page: status, score PSI, features ranked, top reasons, counterfeit stores."""
    score = report["score_psi"]
    colour = {"ok": "#2e7d32", "warn": "#ef6c00", "alert": "#c62828"}[report["status"]]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}")  # fmt: skip
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p style='font-size:20px;color:{colour}'>status: <b>{report['status']}</b></p>",
        "<p>Score PSI: " + ("(no model)" if score is None else f"<b>{score:.3f}</b>") + "</p>",
        "<h2>Features (drifting first, then by the model's reliance on them)</h2>",
        _table(report["features"]),
    ]
    if report.get("reasons") is not None:
        parts += ["<h2>First risk reason of the riskiest stores, then and now</h2>",
                  _table(report["reasons"].reset_index(names="feature"))]  # fmt: skip
    if report.get("counterfeit_features") is not None:
        then, now = report["counterfeit_stores"]
        parts += [f"<h2>Among stores labelled counterfeit ({then} then, {now} now)</h2>",
                  "<p>Where counterfeiters adapting shows first.</p>",
                  _table(report["counterfeit_features"])]  # fmt: skip
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
