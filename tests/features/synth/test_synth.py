"""Tests of the synthetic marketplace: contract, relations, realism, bias, determinism, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract.histories import open_histories
from features.contract.validation import validate_histories
from features.synth.catalog import build_catalog
from features.synth.generate import SynthError, generate_marketplace, make_period
from features.synth.plan import plan_marketplace
from features.synth.tables import fixed_ids, scramble

N_STORES = 4000
SEED = 11
TABLES = ("stores", "listings", "orders", "reviews", "disputes", "logins", "labels", "truth")


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "market"
    generate_marketplace(out, N_STORES, seed=SEED)
    return out


@pytest.fixture(scope="module")
def con(market: Path):
    con = open_histories(market)
    con.execute(f"CREATE VIEW truth AS SELECT * FROM read_parquet('{market}/truth.parquet')")
    return con


def _one(con, sql: str):
    return con.execute(sql).fetchone()[0]


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


# Per-store signals straight from the tables; each is one thing an analyst would look at.
SIGNALS_SQL = """
WITH ratio AS (
    SELECT store_id, median(price / reference_price) AS price_ratio
    FROM listings WHERE reference_price IS NOT NULL GROUP BY store_id),
store_ip AS (SELECT DISTINCT store_id, ip FROM logins),
shared_ip AS (
    SELECT DISTINCT store_id FROM store_ip
    WHERE ip IN (SELECT ip FROM store_ip GROUP BY ip HAVING count(*) > 1)),
store_dev AS (SELECT DISTINCT store_id, device_id FROM logins),
shared_dev AS (
    SELECT DISTINCT store_id FROM store_dev
    WHERE device_id IN (SELECT device_id FROM store_dev GROUP BY device_id HAVING count(*) > 1)),
rev AS (
    SELECT store_id, avg(CASE WHEN rating = 5 AND length(text) < 20 THEN 1 ELSE 0 END) AS s5
    FROM reviews GROUP BY store_id),
disp AS (SELECT DISTINCT store_id FROM disputes WHERE reason = 'counterfeit'),
ship AS (
    SELECT o.store_id,
           avg(CASE WHEN o.ship_from_region <> s.declared_region THEN 1 ELSE 0 END) AS diff
    FROM orders o JOIN stores s USING (store_id) GROUP BY o.store_id)
SELECT t.is_counterfeit,
       -coalesce(r.price_ratio, 1.0) AS low_price_ratio,
       (s.storefront_template = 'basic')::INT AS basic_template,
       (i.store_id IS NOT NULL)::INT AS shares_ip,
       (d.store_id IS NOT NULL)::INT AS shares_device,
       coalesce(rv.s5, 0) AS short_5star_share,
       (c.store_id IS NOT NULL)::INT AS counterfeit_dispute,
       coalesce(sh.diff, 0) AS ship_from_differs
FROM stores s JOIN truth t USING (store_id)
LEFT JOIN ratio r USING (store_id) LEFT JOIN shared_ip i USING (store_id)
LEFT JOIN shared_dev d USING (store_id) LEFT JOIN rev rv USING (store_id)
LEFT JOIN disp c USING (store_id) LEFT JOIN ship sh USING (store_id)
ORDER BY s.store_id
"""


def test_output_obeys_the_contract(market: Path) -> None:
    report = validate_histories(market)
    assert report.ok, [v.message for v in report.violations]
    assert report.summary.n_stores == N_STORES
    for name in TABLES:
        assert (market / f"{name}.parquet").is_file()
    manifest = json.loads((market / "synth.json").read_text())
    assert manifest["seed"] == SEED and manifest["stores"] == N_STORES
    assert manifest["rows"]["orders"] == report.summary.rows["orders"]
    assert not list(market.parent.glob(".market.tmp-*"))


def test_shape_is_a_marketplace(con, market: Path) -> None:
    manifest = json.loads((market / "synth.json").read_text())
    assert 60 <= manifest["events"] / N_STORES <= 150
    assert 0.02 <= manifest["counterfeit_share"] <= 0.06
    sizes = con.execute(
        "SELECT count(*) FROM truth WHERE ring_id IS NOT NULL GROUP BY ring_id"
    ).fetchall()
    assert len(sizes) >= 5 and all(3 <= n <= 30 for (n,) in sizes)
    # Heavy tail: a few big stores, many small ones.
    q50, q100 = con.execute(
        "SELECT quantile_cont(n, 0.5), max(n) FROM "
        "(SELECT store_id, count(*) AS n FROM orders GROUP BY store_id)"
    ).fetchone()
    assert q100 > 20 * q50
    brands = {b for (b,) in con.execute("SELECT DISTINCT brand FROM listings").fetchall()}
    assert len(brands - {None}) >= 90
    assert _one(con, "SELECT count(DISTINCT category) FROM stores") == 9


def test_events_reference_their_own_store(con) -> None:
    checks = {
        "order of another store's listing": """SELECT count(*) FROM orders o
            JOIN listings l USING (listing_id) WHERE l.store_id <> o.store_id""",
        "order before its listing": """SELECT count(*) FROM orders o
            JOIN listings l USING (listing_id) WHERE o.ordered_at < l.listed_at""",
        "review of another store's order": """SELECT count(*) FROM reviews r
            JOIN orders o USING (order_id) WHERE r.store_id <> o.store_id
            OR r.created_at < o.ordered_at""",
        "dispute of another store's order": """SELECT count(*) FROM disputes d
            JOIN orders o USING (order_id) WHERE d.store_id <> o.store_id
            OR d.opened_at < o.ordered_at""",
        "event before the store opened": """SELECT count(*) FROM logins g
            JOIN stores s USING (store_id) WHERE g.logged_at < s.opened_at""",
    }
    for what, sql in checks.items():
        assert _one(con, sql) == 0, what
    assert _one(con, "SELECT avg((order_id IS NOT NULL)::INT) FROM reviews") > 0.85


def test_banned_stores_stop_and_rings_reopen_on_the_same_devices(con) -> None:
    late = """SELECT count(*) FROM {t} e JOIN (SELECT store_id, min(labeled_at) AS at
        FROM labels WHERE is_counterfeit = 1 GROUP BY store_id) b USING (store_id)
        WHERE e.{c} > b.at + INTERVAL 8 DAY"""
    assert _one(con, "SELECT count(*) FROM labels WHERE is_counterfeit = 1") > 20
    for table, column in (("orders", "ordered_at"), ("logins", "logged_at")):
        assert _one(con, late.format(t=table, c=column)) == 0
    # A store opened after a ring mate's ban, with a new seller, on a device the banned
    # store used.
    reopened = _one(
        con,
        """SELECT count(DISTINCT n.store_id)
        FROM (SELECT store_id, min(labeled_at) AS at FROM labels
              WHERE is_counterfeit = 1 GROUP BY store_id) b
        JOIN truth tb ON tb.store_id = b.store_id
        JOIN truth tn ON tn.ring_id = tb.ring_id AND tn.store_id <> tb.store_id
        JOIN stores sn ON sn.store_id = tn.store_id AND sn.opened_at > b.at
        JOIN stores sb ON sb.store_id = b.store_id AND sb.seller_id <> sn.seller_id
        JOIN logins n ON n.store_id = tn.store_id
        JOIN logins o ON o.store_id = b.store_id AND o.device_id = n.device_id""",
    )
    assert reopened >= 3


def test_classic_signals_point_the_risky_way(con) -> None:
    # Each signal an analyst looks at still leans towards counterfeiters, weakly: every
    # feature of the built table, alone and together, is measured in test_synth_realism.
    # Measured at 4,000 stores, seed 11: price 0.58, basic 0.56, shared IP 0.72, shared
    # device 0.73, short 5-stars 0.57, counterfeit dispute 0.62, ship-from 0.60.
    df = con.execute(SIGNALS_SQL).df()
    y = df.pop("is_counterfeit").to_numpy()
    for name in df.columns:
        auc = _auc(y, df[name].to_numpy())
        assert 0.5 < auc < 0.85, (name, auc)


def test_no_single_observation_proves_the_truth(con) -> None:
    """Each giveaway of the old generator now happens on the other side too."""
    from features.store.vocabulary import fake_review_pattern, replica_pattern

    def stores(sql: str) -> dict[int, int]:
        """Stores per truth (0 genuine, 1 counterfeit) among those ``sql`` selects."""
        rows = con.execute(
            f"SELECT t.is_counterfeit, count(DISTINCT x.store_id) FROM ({sql}) x "
            "JOIN truth t USING (store_id) GROUP BY 1"
        ).fetchall()
        return {0: 0, 1: 0} | dict(rows)

    above = stores("SELECT store_id FROM listings WHERE price > 1.05 * reference_price")
    far_below = stores("SELECT store_id FROM listings WHERE price < 0.4 * reference_price")
    fake_words = stores(
        f"SELECT store_id FROM reviews WHERE regexp_matches(lower(text), '{fake_review_pattern()}')"
    )
    replica_ocr = stores(
        "SELECT store_id FROM listings "
        f"WHERE regexp_matches(lower(image_text), '{replica_pattern()}')"
    )
    for what, counts in {
        "priced above reference": above,
        "priced below 40% of reference": far_below,
        "fake-goods words in reviews": fake_words,
        "replica words in image text": replica_ocr,
    }.items():
        assert counts[0] >= 20 and counts[1] >= 10, (what, counts)
        assert counts[1] / (counts[0] + counts[1]) < 0.5, (what, counts)
    # Genuine stores share devices and Wi-Fi with counterfeit ones (co-working, families).
    mixed = _one(
        con,
        """WITH used AS (SELECT DISTINCT store_id, device_id AS r FROM logins
                         UNION SELECT DISTINCT store_id, wifi_id FROM logins
                         WHERE wifi_id IS NOT NULL)
        SELECT count(DISTINCT a.store_id) FROM used a JOIN used b ON a.r = b.r
        JOIN truth ta ON ta.store_id = a.store_id JOIN truth tb ON tb.store_id = b.store_id
        WHERE ta.is_counterfeit = 0 AND tb.is_counterfeit = 1""",
    )
    assert mixed >= 20
    # Sellers run several stores: honest ones, and some with honest and counterfeit stores.
    kinds = dict(
        con.execute(
            """SELECT kind, count(*) FROM (
                SELECT max(is_counterfeit) + min(is_counterfeit) AS kind
                FROM stores JOIN truth USING (store_id) GROUP BY seller_id HAVING count(*) > 1)
            GROUP BY kind ORDER BY kind"""
        ).fetchall()
    )
    assert kinds.get(0, 0) >= 20 and kinds.get(1, 0) >= 1, kinds
    # Delivery times and declared stock overlap: many counterfeiters are fast and
    # modest, many genuine stores slow and stocked in bulk.
    overlap = con.execute(
        """WITH d AS (SELECT store_id, avg(epoch(delivered_at - ordered_at)) AS days
                      FROM orders WHERE delivered_at IS NOT NULL GROUP BY 1),
        s AS (SELECT store_id, avg(ln(1 + stock)) AS stock FROM listings GROUP BY 1),
        x AS (SELECT t.is_counterfeit AS cf, d.days, s.stock FROM truth t
              JOIN d USING (store_id) JOIN s USING (store_id)),
        g AS (SELECT median(days) AS days, median(stock) AS stock FROM x WHERE cf = 0),
        c AS (SELECT median(stock) AS stock FROM x WHERE cf = 1)
        SELECT avg((x.days <= g.days)::INT) FILTER (WHERE x.cf = 1),
               avg((x.stock >= c.stock)::INT) FILTER (WHERE x.cf = 0)
        FROM x, g, c"""
    ).fetchone()
    assert overlap[0] > 0.2 and overlap[1] > 0.2, overlap


def test_genuine_stores_share_ips_too(con) -> None:
    df = con.execute(SIGNALS_SQL).df()
    genuine = df[df.is_counterfeit == 0]
    assert 0.15 < genuine.shares_ip.mean() < 0.6
    assert 0.01 < genuine.shares_device.mean() < 0.15
    assert (genuine.low_price_ratio > -0.8).mean() < 1.0  # outlets and second-hand


def test_counterfeiters_adapt_over_time(con) -> None:
    ratio = """SELECT median(price / reference_price) FROM listings JOIN truth USING (store_id)
        WHERE is_counterfeit = 1 AND reference_price IS NOT NULL AND listed_at {cond}"""
    early = _one(con, ratio.format(cond="< TIMESTAMP '2025-03-01'"))
    late = _one(con, ratio.format(cond=">= TIMESTAMP '2025-11-01'"))
    assert late > early + 0.05
    custom = """SELECT avg((storefront_template = 'custom')::INT) FROM stores
        JOIN truth USING (store_id) WHERE is_counterfeit = 1 AND opened_at {cond}"""
    assert _one(con, custom.format(cond=">= TIMESTAMP '2025-07-01'")) > _one(
        con, custom.format(cond="< TIMESTAMP '2025-07-01'")
    )


def test_labels_are_few_biased_noisy_and_spread(con) -> None:
    labels = con.execute(
        "SELECT l.*, t.is_counterfeit AS truth FROM labels l JOIN truth t USING (store_id)"
    ).df()
    labeled = labels.drop_duplicates("store_id")
    population = _one(con, "SELECT avg(is_counterfeit) FROM truth")
    assert 0.03 <= len(labeled) / N_STORES <= 0.07
    hit_rate = labeled.truth.mean()
    assert 4 * population < hit_rate < 0.7
    assert (labels.is_counterfeit != labels.truth).mean() < 0.06
    assert labels.store_id.duplicated().sum() >= 1  # a few stores are checked twice
    assert set(labels.source) == {"test_buy", "rights_holder", "complaint", "police"}
    by_source = labels.groupby("source").truth.mean()
    assert by_source["test_buy"] < 0.2 < by_source["rights_holder"]
    span = labels.labeled_at.max() - labels.labeled_at.min()
    assert span > pd.Timedelta(days=540)
    # Complaint checks follow a dispute; rights-holder notices follow a famous-brand listing.
    no_dispute = _one(
        con,
        """SELECT count(*) FROM labels l WHERE source = 'complaint' AND NOT EXISTS (
            SELECT 1 FROM disputes d
            WHERE d.store_id = l.store_id AND d.opened_at < l.labeled_at)""",
    )
    assert no_dispute == 0
    famous = ", ".join(f"'{b}'" for b in build_catalog().famous_brands)
    no_famous = _one(
        con,
        f"""SELECT count(*) FROM labels l WHERE source = 'rights_holder' AND NOT EXISTS (
            SELECT 1 FROM listings x WHERE x.store_id = l.store_id AND x.listed_at < l.labeled_at
            AND x.brand IN ({famous}))""",
    )
    assert no_famous == 0


def test_about_two_percent_of_labels_are_wrong() -> None:
    plan = plan_marketplace(60_000, 3, make_period(), build_catalog())
    truth = plan.stores["is_cf"][plan.labels["store"]]
    flipped = (plan.labels["is_counterfeit"] != truth).mean()
    assert 0.01 < flipped < 0.03


def _digest(directory: Path) -> str:
    h = hashlib.sha256()
    for name in TABLES:
        h.update((directory / f"{name}.parquet").read_bytes())
    return h.hexdigest()


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = generate_marketplace(tmp_path / "a", 600, seed=5)
    b = generate_marketplace(tmp_path / "b", 600, seed=5)
    generate_marketplace(tmp_path / "c", 600, seed=6)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    assert a.manifest() == b.manifest()


def test_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        generate_marketplace(out, 200, seed=1)
    assert (out / "keep.txt").read_text() == "mine"
    generate_marketplace(out, 200, seed=1, force=True)
    assert not (out / "keep.txt").exists() and (out / "orders.parquet").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stores": 50}, "stores must be >= 100"),
        ({"stores": 200, "start": "2026-10-01"}, "future"),
        ({"stores": 200, "start": "July"}, "not a date"),
        ({"stores": 200, "months": 0}, "months must be >= 1"),
    ],
)
def test_bad_arguments_write_nothing(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(SynthError, match=message):
        generate_marketplace(tmp_path / "m", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_period_is_whole_months_in_utc() -> None:
    period = make_period("2024-07-01", 24)
    assert pd.Timestamp(period.start, unit="s") == pd.Timestamp("2024-07-01")
    assert pd.Timestamp(period.end, unit="s") == pd.Timestamp("2026-07-01")


def test_id_helpers() -> None:
    assert fixed_ids("ORD", np.array([0, 42, 9_999_999_999])).to_pylist() == [
        "ORD0000000000",
        "ORD0000000042",
        "ORD9999999999",
    ]
    x = np.arange(1 << 16)
    assert len(np.unique(scramble(x, 33, 1234))) == len(x)
    assert scramble(x, 33, 1234).max() < 1 << 33


def test_cli_generates_and_prints_the_shape(tmp_path: Path) -> None:
    from spotcheck.cli import app

    out = tmp_path / "cli"
    args = ["synth", "--stores", "300", "--seed", "2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "counterfeit stores" in result.output and "labels" in result.output
    assert (out / "truth.parquet").is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output


def test_the_generator_writes_replica_slang_the_detector_does_not_know() -> None:
    """The generator keeps its own vocabulary, so text features are not flattered."""
    import re

    from features.store.vocabulary import REPLICA_TERMS as DETECTOR_TERMS
    from features.store.vocabulary import replica_pattern
    from features.synth.catalog import OCR_REPLICA, REPLICA_TERMS

    detector = re.compile(replica_pattern())
    unknown = [t for t in REPLICA_TERMS if not detector.search(t.lower())]
    assert {t.lower() for t in REPLICA_TERMS} != set(DETECTOR_TERMS)
    assert len(unknown) >= len(REPLICA_TERMS) / 3, unknown
    assert any(not detector.search(t.lower()) for t in OCR_REPLICA)
