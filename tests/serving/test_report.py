"""``spotcheck report``: one self-contained case report per store, for reviewers."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from serving.online import band


def test_bands():
    assert [band(p) for p in (0.95, 0.9, 0.6, 0.2, 0.19, 0.0)] == [
        "very high", "very high", "high", "elevated", "low", "low",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reports(histories_model, histories_scores, cli, tmp_path_factory):
    """Reports of the two riskiest stores, one store labelled counterfeit, and an unknown id."""
    histories, name = histories_model
    work = tmp_path_factory.mktemp("reports")
    scores = histories_scores
    labels = pd.read_parquet(histories / "labels.parquet")
    confirmed = labels[labels["is_counterfeit"] == 1]["store_id"].iloc[0]
    stores = [*scores["store_id"].head(2), confirmed]
    out = work / "out"
    result = cli(
        "report", *stores, "NO-SUCH-STORE", "--model", f"models:/{name}/1",
        "--histories", histories, "--out", out,
    )  # fmt: skip
    return result, out, stores, scores.set_index("store_id"), labels


def test_unknown_ids_are_named_and_the_known_ones_still_reported(reports):
    result, out, stores, _, _ = reports
    assert result.exit_code == 1
    assert "unknown store id(s), no report: NO-SUCH-STORE" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.html" for s in stores)


def test_a_report_carries_score_reasons_evidence_links_history_and_similar_stores(reports):
    _, out, stores, scores, labels = reports
    confirmed = set(labels[labels["is_counterfeit"] == 1]["store_id"])
    for store in stores:
        page = (out / f"{store}.html").read_text()
        assert "<script" not in page and "src=" not in page  # self-contained, nothing fetched
        score = scores.loc[store, "score"]
        assert f"<b>{score:.3f}</b>" in page and band(score) in page
        for section in ("Raising the risk", "Lowering the risk", "By feature group",
                        "Evidence from the store", "cheapest listings", "Linked stores",
                        "Score over the last six months", "Most similar confirmed"):  # fmt: skip
            assert section in page, section
        assert page.count("<svg") == 3  # waterfall, network, history
        assert "genuine stores:" in page
        history = _table_after(page, "Score over the last six months")
        assert 1 <= len(history) <= 6
        # The latest point of the history is the score itself.
        assert float(history[-1][1]) == pytest.approx(score, abs=1e-4)
        similar = [row[0] for row in _table_after(page, "Most similar confirmed")]
        assert similar and set(similar) <= confirmed and store not in similar


def test_the_waterfall_adds_up_to_the_raw_margin(reports):
    _, out, stores, scores, _ = reports
    page = (out / f"{stores[0]}.html").read_text()
    svg = page[page.index('<figure id="waterfall">') : page.index("</figure>")]
    steps = [float(v) for v in re.findall(r">([+-]\d+\.\d+)</text>", svg)]
    base, raw = (
        float(v) for v in re.search(r"base ([+-]\S+) → raw margin ([+-]\S+) ", svg).groups()
    )
    assert base + sum(steps) == pytest.approx(raw, abs=0.01 * len(steps))
    assert raw == pytest.approx(scores.loc[stores[0], "raw_score"], abs=0.01)


def _table_after(page: str, heading: str) -> list[list[str]]:
    """The rows (cell texts) of the first table after ``heading``."""
    rest = page[page.index(heading) :]
    table = rest[rest.index("<table>") : rest.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]


def test_the_queue_writes_reports_of_its_first_picks(histories_model, cli, tmp_path, byo_model):
    histories, name = histories_model
    out = tmp_path / "queue"
    result = cli(
        "queue", "--histories", histories, "--model", f"models:/{name}/1", "--budget", 4,
        "--reports", 2, "--out", out, "--top", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    picks = pd.read_parquet(out / "queue.parquet")["store_id"].head(2)
    assert sorted(p.name for p in (out / "reports").iterdir()) == sorted(f"{s}.html" for s in picks)
    assert str(out / "reports") in result.stderr
    refused = cli(
        "queue", "--features", byo_model.data.features, "--model", f"models:/{name}/1",
        "--budget", 4, "--reports", 2, "--out", tmp_path / "other",
    )  # fmt: skip
    assert refused.exit_code == 2 and not (tmp_path / "other").exists()
