"""The synthetic marketplace: store histories with known truth, for development and tests.

``generate_marketplace`` writes a histories directory that obeys the contract
(``features.contract.tables``) plus ``truth.parquet`` (``store_id``, ``is_counterfeit``,
``ring_id``: for evaluation only, never for training) and a ``synth.json`` manifest.

How it works: ``features.synth.plan`` plans every store of the marketplace up front (rings,
shared offices, labels, bans, re-opened stores), ``features.synth.events`` generates the
events of one block of stores at a time from that plan, and ``features.synth.tables``
formats them;
each table is streamed to one Parquet file, so memory stays bounded at a million stores. The
same seed and store count give byte-identical files.

The signals counterfeiters leave (low prices, basic storefronts, bulk stock, slow shipping,
shared devices and IPs, fake review bursts, fake complaints, counterfeit disputes, replica
slang, ship-from regions) are all present, and they overlap the way they do in real
marketplaces: most behaviours follow a store's "look" (``features.synth.plan``), whose
distribution only leans with the truth. Genuine wholesalers declare bulk stock, grey-market
and cross-border sellers are cheap and slow, discounters sell far below reference, family
businesses, agencies and co-working tenants share devices and Wi-Fi (some with a ring), and
buyers of genuine goods write "not fake!" reviews; premium fakes price near or above the
reference, ship fast from domestic warehouses, use custom storefronts and believable bought
reviews, and their slang is partly unknown to any fixed word list. No single feature ranks
stores well on its own (``tests/features/synth/test_synth_realism.py`` measures every feature
of the built table); counterfeiters also drift towards genuine-looking prices and storefronts
over the period.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from features import FeaturesError
from features.contract.tables import LABEL_SOURCES
from features.synth.accounts import NAT_IPS_PER_STORE, IdSpace
from features.synth.catalog import build_catalog
from features.synth.events import generate_block
from features.synth.plan import Period, StorePlan, plan_marketplace
from features.synth.tables import TableBuilder, contract_schema

GENERATOR_VERSION = "2"  # raised whenever the same seed gives different histories
DEFAULT_START = date(2024, 7, 1)
DEFAULT_MONTHS = 24
BLOCK_STORES = 50_000
MIN_STORES = 100
EVENT_TABLES = ("listings", "orders", "reviews", "disputes", "logins")
COMPRESSION = "zstd"

ProgressCallback = Callable[[int, int, int], None]


class SynthError(FeaturesError):
    """The marketplace cannot be generated with these arguments."""


@dataclass
class SynthSummary:
    """What was generated: the shape of the marketplace and how long it took."""

    out: str
    seed: int
    stores: int
    start: str
    end: str
    generator_version: str
    block_stores: int
    rows: dict[str, int] = field(default_factory=dict)
    events: int = 0
    counterfeit_stores: int = 0
    counterfeit_share: float = 0.0
    rings: int = 0
    ring_stores: int = 0
    reopened_stores: int = 0
    labels: int = 0
    labeled_stores: int = 0
    labeled_share: float = 0.0
    label_counterfeit_truth_share: float = 0.0
    label_sources: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def manifest(self) -> dict:
        """The ``synth.json`` content (everything except the timing and output path)."""
        out = asdict(self)
        del out["seconds"], out["out"]
        return out


def make_period(start: date | str = DEFAULT_START, months: int = DEFAULT_MONTHS) -> Period:
    """The generated period: ``months`` calendar months from ``start`` (UTC midnight).

    Args:
        start: First day, a date or ``YYYY-MM-DD``.
        months: Number of months, at least 1.

    Returns:
        The period.

    Raises:
        SynthError: If the start does not parse, months < 1, or the period ends in the future.
    """
    if isinstance(start, str):
        try:
            start = date.fromisoformat(start)
        except ValueError as exc:
            raise SynthError(f"start {start!r} is not a date (YYYY-MM-DD)") from exc
    if months < 1:
        raise SynthError(f"months must be >= 1, got {months}")
    first = datetime(start.year, start.month, start.day, tzinfo=UTC)
    total = start.month - 1 + months
    last = datetime(start.year + total // 12, total % 12 + 1, 1, tzinfo=UTC)
    if start.day != 1:
        last = last.replace(day=min(start.day, 28))
    if last > datetime.now(UTC):
        raise SynthError(
            f"the period {first.date()} .. {last.date()} ends in the future; histories may only "
            "hold past events (use an earlier start or fewer months)"
        )
    return Period(int(first.timestamp()), int(last.timestamp()))


def _prepare_out(out: Path, force: bool) -> Path:
    """Check ``out`` may be written and return a fresh temporary directory next to it."""
    if out.exists() and not out.is_dir():
        raise SynthError(f"output {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SynthError(f"output {str(out)!r} exists and is not empty; force replaces it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished directory onto ``out``, replacing an old one only at the end."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old)


def _nat_pools(catalog_weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and size of each region's carrier-NAT address pool (bigger regions, more IPs)."""
    sizes = 4 + np.floor(NAT_IPS_PER_STORE * n * catalog_weights).astype(np.int64)
    return np.cumsum(sizes) - sizes, sizes


def generate_marketplace(
    out: str | Path,
    stores: int,
    seed: int = 0,
    start: date | str = DEFAULT_START,
    months: int = DEFAULT_MONTHS,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> SynthSummary:
    """Generate a synthetic marketplace into ``out``.

    Args:
        out: Output directory; must be absent or empty unless ``force``.
        stores: Number of stores (re-opened ring stores included), at least 100.
        seed: Random seed; same seed and ``stores`` give byte-identical tables.
        start: First day of the period (UTC).
        months: Length of the period in months; the period must lie in the past.
        force: Replace a non-empty ``out``.
        progress: Called as ``progress(blocks_done, blocks_total, events_so_far)``.

    Returns:
        The summary, also written (without timing) to ``out/synth.json``.

    Raises:
        SynthError: On bad arguments or an existing non-empty ``out`` without ``force``.
    """
    began = time.perf_counter()
    if stores < MIN_STORES:
        raise SynthError(f"stores must be >= {MIN_STORES}, got {stores}")
    period = make_period(start, months)
    out = Path(out)
    tmp = _prepare_out(out, force)
    try:
        summary = _generate(tmp, stores, seed, period, progress)
        summary.out = str(out)
        (tmp / "synth.json").write_text(json.dumps(summary.manifest(), indent=2) + "\n")
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - began
    return summary


def _generate(
    directory: Path, n: int, seed: int, period: Period, progress: ProgressCallback | None
) -> SynthSummary:
    """Plan the marketplace and stream every table into ``directory``."""
    catalog = build_catalog()
    plan = plan_marketplace(n, seed, period, catalog)
    ids = IdSpace.plan(n, len(plan.rings["start"]), plan.n_offices, plan.n_agencies)
    nat = _nat_pools(catalog.region_weights, n)
    builder = TableBuilder(plan, catalog, seed)
    counters = {"listing": 1, "order": 1, "review": 1, "dispute": 1}
    rows = dict.fromkeys(EVENT_TABLES, 0)
    n_blocks = -(-n // BLOCK_STORES)
    writers = {
        name: pq.ParquetWriter(directory / f"{name}.parquet", contract_schema(name),
                               compression=COMPRESSION)
        for name in EVENT_TABLES
    }  # fmt: skip
    try:
        for b in range(n_blocks):
            lo, hi = b * BLOCK_STORES, min(n, (b + 1) * BLOCK_STORES)
            rng = np.random.default_rng(np.random.SeedSequence([seed, 1, b]))
            block = generate_block(plan, lo, hi, period, catalog, ids, nat, rng)
            for name, table in builder.block_tables(block, lo, counters).items():
                writers[name].write_table(table)
                rows[name] += table.num_rows
            if progress is not None:
                progress(b + 1, n_blocks, sum(rows.values()))
    finally:
        for writer in writers.values():
            writer.close()
    for name, table in (
        ("stores", builder.stores_table()),
        ("labels", builder.labels_table()),
        ("truth", builder.truth_table()),
    ):
        pq.write_table(table, directory / f"{name}.parquet", compression=COMPRESSION)
        if name != "truth":
            rows[name] = table.num_rows
    return _summarize(plan, rows, n, seed, period)


def _day(seconds: int) -> str:
    """ISO date of an epoch second (UTC)."""
    return datetime.fromtimestamp(seconds, UTC).date().isoformat()


def _summarize(
    plan: StorePlan, rows: dict[str, int], n: int, seed: int, period: Period
) -> SynthSummary:
    """The marketplace's shape from its plan and row counts."""
    st, lab = plan.stores, plan.labels
    ring = st["ring"]
    labeled = np.unique(lab["store"])
    return SynthSummary(
        out="",
        seed=seed,
        stores=n,
        start=_day(period.start),
        end=_day(period.end),
        generator_version=GENERATOR_VERSION,
        block_stores=BLOCK_STORES,
        rows=rows,
        events=sum(rows[t] for t in EVENT_TABLES),
        counterfeit_stores=int(st["is_cf"].sum()),
        counterfeit_share=round(float(st["is_cf"].mean()), 5),
        rings=len(np.unique(ring[ring >= 0])),
        ring_stores=int((ring >= 0).sum()),
        reopened_stores=int(st["reopened"].sum()),
        labels=len(lab["store"]),
        labeled_stores=len(labeled),
        labeled_share=round(len(labeled) / n, 5),
        label_counterfeit_truth_share=round(float(st["is_cf"][labeled].mean()), 5)
        if len(labeled)
        else 0.0,
        label_sources={s: int((lab["source"] == i).sum()) for i, s in enumerate(LABEL_SOURCES)},
    )
