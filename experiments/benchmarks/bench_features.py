"""Benchmark the feature build: the full DuckDB build, and a shared subset against pandas.

Phases, each in its own subprocess so that every peak RSS is clean:

* ``validate``: ``check_histories`` (the contract check the CLI runs first), for reference;
* ``full``: ``build_feature_table`` (all store and link-graph features) without validation;
* ``subset-duckdb``: the project's DuckDB definitions of ``SUBSET`` only;
* ``subset-pandas``: a straightforward pandas implementation of the same ``SUBSET`` (the
  baseline a data scientist would write: read the columns, filter by time, ``groupby``).

Both subset phases compute the same rows (stores open before T, as of T = the end of the
histories) and their outputs are compared value by value. Events are rows of listings,
orders, reviews, disputes and logins (the subset reads all but logins and counts only
what it reads).

Usage (Parquet histories, e.g. from ``spotcheck synth``)::

    flock /tmp/spotcheck-heavy.lock uv run --frozen python -m \\
        experiments.benchmarks.bench_features --histories DIR [--pandas-stores N] [--repeat N]
    ... --stores 20000 --seed 7 --workdir /tmp/bench   # generate the marketplace first
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SUBSET = (
    "listing_count",
    "price_to_reference_median",
    "share_listings_below_half_reference",
    "share_branded_listings",
    "mean_log_reference_price",
    "order_count",
    "gmv",
    "orders_30d",
    "mean_order_amount",
    "ship_from_mismatch_share",
    "return_rate",
    "delivery_days_mean",
    "review_count",
    "mean_rating",
    "share_5_star",
    "share_reviews_without_order",
    "counterfeit_dispute_rate",
    "dispute_rate",
)
EVENT_TABLES = ("listings", "orders", "reviews", "disputes", "logins")
SUBSET_TABLES = ("listings", "orders", "reviews", "disputes")


# ----------------------------------------------------------------------------- phases


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def phase_validate(histories: Path, **_) -> dict:
    from features.contract.validation import check_histories

    started = time.perf_counter()
    check_histories(histories)
    return {"seconds": time.perf_counter() - started}


def phase_full(histories: Path, **_) -> dict:
    from features.build import build_feature_table

    started = time.perf_counter()
    table, spec = build_feature_table(histories, validate=False)
    return {
        "seconds": time.perf_counter() - started,
        "rows": len(table),
        "features": len(spec),
        "spec_hash": spec.hash,
    }


def phase_subset_duckdb(histories: Path, as_of: pd.Timestamp, out: Path, sample=None) -> dict:
    from features.build import open_store_keys
    from features.contract.histories import open_histories
    from features.settings import duckdb_connection
    from features.store.engine import compute_store_features

    started = time.perf_counter()
    con = open_histories(histories, duckdb_connection())
    # The production path's keys (build_feature_table's query), sampled like pandas' rows.
    keys = open_store_keys(con, as_of)
    if sample is not None:
        sampled = keys["store_id"].isin(pd.read_parquet(sample)["store_id"])
        keys = keys[sampled].reset_index(drop=True)
    table = compute_store_features(con, keys, names=SUBSET)
    seconds = time.perf_counter() - started
    table.to_parquet(out, index=False)
    return {"seconds": seconds, "rows": len(table)}


def pandas_subset(histories: Path, as_of: pd.Timestamp, store_ids=None) -> pd.DataFrame:
    """The SUBSET features as a data scientist would write them in pandas."""
    cutoff = as_of.tz_localize("UTC")

    def read(table: str, columns: list[str], time_column: str) -> pd.DataFrame:
        filters = [("store_id", "in", list(store_ids))] if store_ids is not None else None
        df = pd.read_parquet(histories / f"{table}.parquet", columns=columns, filters=filters)
        return df[df[time_column] < cutoff]

    stores = read("stores", ["store_id", "opened_at", "declared_region"], "opened_at")
    out = stores[["store_id"]].set_index("store_id")

    listings = read(
        "listings", ["store_id", "listed_at", "brand", "price", "reference_price"], "listed_at"
    )
    branded = listings["brand"].notna()
    listings["ratio"] = (listings["price"] / listings["reference_price"]).where(branded)
    listings["below_half"] = listings["ratio"] < 0.5
    listings["log_ref"] = np.log(listings["reference_price"].where(branded))
    listings["branded"] = branded
    g = listings.groupby("store_id")
    out["listing_count"] = g.size()
    out["price_to_reference_median"] = g["ratio"].median()
    out["share_listings_below_half_reference"] = g["below_half"].sum() / g["ratio"].count()
    out["share_branded_listings"] = g["branded"].mean()
    out["mean_log_reference_price"] = g["log_ref"].mean()

    orders = read(
        "orders",
        ["store_id", "ordered_at", "amount", "ship_from_region", "delivered_at", "returned"],
        "ordered_at",
    )
    orders = orders.merge(stores[["store_id", "declared_region"]], on="store_id")
    orders["recent"] = orders["ordered_at"] >= cutoff - pd.Timedelta(days=30)
    orders["mismatch"] = orders["ship_from_region"] != orders["declared_region"]
    orders["delivered"] = orders["delivered_at"] < cutoff
    orders["returned_delivered"] = orders["returned"] & orders["delivered"]
    orders["delivery_days"] = (
        (orders["delivered_at"] - orders["ordered_at"]).dt.total_seconds() / 86400
    ).where(orders["delivered"])
    g = orders.groupby("store_id")
    out["order_count"] = g.size()
    out["gmv"] = g["amount"].sum()
    out["orders_30d"] = g["recent"].sum()
    out["mean_order_amount"] = g["amount"].mean()
    out["ship_from_mismatch_share"] = g["mismatch"].mean()
    out["return_rate"] = g["returned_delivered"].sum() / g["delivered"].sum()
    out["delivery_days_mean"] = g["delivery_days"].mean()

    reviews = read("reviews", ["store_id", "created_at", "order_id", "rating"], "created_at")
    reviews["five"] = reviews["rating"] == 5
    reviews["no_order"] = reviews["order_id"].isna()
    g = reviews.groupby("store_id")
    out["review_count"] = g.size()
    out["mean_rating"] = g["rating"].mean()
    out["share_5_star"] = g["five"].mean()
    out["share_reviews_without_order"] = g["no_order"].mean()

    disputes = read("disputes", ["store_id", "opened_at", "reason"], "opened_at")
    disputes["counterfeit"] = disputes["reason"] == "counterfeit"
    g = disputes.groupby("store_id")
    orders_n = out["order_count"]
    out["counterfeit_dispute_rate"] = g["counterfeit"].sum().reindex(out.index, fill_value=0) / (
        orders_n.where(orders_n > 0)
    )
    out["dispute_rate"] = g.size().reindex(out.index, fill_value=0) / orders_n.where(orders_n > 0)

    for column in ("listing_count", "order_count", "orders_30d", "review_count"):
        out[column] = out[column].fillna(0).astype("int64")
    out["gmv"] = out["gmv"].fillna(0.0)
    out["return_rate"] = out["return_rate"].replace([np.inf], np.nan)
    return out.reset_index().sort_values("store_id").reset_index(drop=True)


def phase_subset_pandas(histories: Path, as_of: pd.Timestamp, out: Path, sample=None) -> dict:
    started = time.perf_counter()
    ids = None if sample is None else pd.read_parquet(sample)["store_id"].tolist()
    table = pandas_subset(histories, as_of, ids)
    seconds = time.perf_counter() - started
    table.to_parquet(out, index=False)
    return {"seconds": seconds, "rows": len(table)}


PHASES = {
    "validate": phase_validate,
    "full": phase_full,
    "subset-duckdb": phase_subset_duckdb,
    "subset-pandas": phase_subset_pandas,
}


# ----------------------------------------------------------------------------- driver


def _run_phase(name: str, histories: Path, work: Path, as_of, sample: Path | None) -> dict:
    """Run one phase in a fresh interpreter and return its measurements."""
    result = work / f"{name}.json"
    cmd = [
        sys.executable,
        "-m",
        "experiments.benchmarks.bench_features",
        "--phase",
        name,
        "--histories",
        str(histories),
        "--as-of",
        str(as_of),
        "--phase-out",
        str(work / f"{name}.parquet"),
        "--phase-result",
        str(result),
    ]
    if sample is not None:
        cmd += ["--sample", str(sample)]
    print(f"[bench] {name} ...", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {
            "failed": True,
            "returncode": proc.returncode,
            "wall": time.perf_counter() - started,
        }
    return json.loads(result.read_text())


def _median_run(measured: list[dict]) -> dict:
    """One phase's repetitions as one result: the median run, every run's seconds, the
    highest peak RSS; failed if any repetition failed."""
    failed = [m for m in measured if m.get("failed")]
    if failed:
        return failed[0]
    seconds = [m["seconds"] for m in measured]
    median = sorted(measured, key=lambda m: m["seconds"])[(len(measured) - 1) // 2]
    return {
        **median,
        "runs": seconds,
        "peak_rss_bytes": max(m["peak_rss_bytes"] for m in measured),
    }


def compare(duck: pd.DataFrame, pand: pd.DataFrame) -> dict:
    """Largest relative difference per feature; missing values must coincide."""
    merged = duck.merge(pand, on="store_id", suffixes=("_duck", "_pandas"), validate="1:1")
    worst = {}
    for name in SUBSET:
        a = merged[f"{name}_duck"].astype("float64").to_numpy()
        b = merged[f"{name}_pandas"].astype("float64").to_numpy()
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            worst[name] = float("inf")
            continue
        ok = ~np.isnan(a)
        diff = np.abs(a[ok] - b[ok]) / np.maximum(1.0, np.abs(b[ok]))
        worst[name] = float(diff.max()) if ok.any() else 0.0
    return {"rows": len(merged), "rows_duckdb": len(duck), "rows_pandas": len(pand), "worst": worst}


def event_counts(histories: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {t: pq.ParquetFile(histories / f"{t}.parquet").metadata.num_rows for t in EVENT_TABLES}


def self_check(workdir: Path) -> int:
    """Check the pandas baseline against the DuckDB subset on a small marketplace.

    Runs the comparison the benchmark reports (``compare``) at two as-of times, and proves
    ``compare`` flags a feature that differs. Prints the findings; exits 1 on any failure.
    The test suite runs this as a command (nothing imports ``experiments``).
    """
    from features.synth.generate import generate_marketplace

    market = workdir / "market"
    generate_marketplace(market, 800, seed=3, start="2024-01-01", months=12)
    failures = []
    for when in (pd.Timestamp("2024-08-15 12:00:00"), pd.Timestamp("2025-01-01")):
        measured = phase_subset_duckdb(market, as_of=when, out=workdir / "duck.parquet")
        duck = pd.read_parquet(workdir / "duck.parquet")
        pand = pandas_subset(market, when)
        agreement = compare(duck, pand)
        worst = max(agreement["worst"].values())
        print(f"as of {when}: {agreement['rows']} rows, largest relative difference {worst:.1e}")
        if not measured["rows"] == len(duck) == len(pand) == agreement["rows"] > 100:
            failures.append(f"{when}: row counts differ: {agreement}")
        if worst >= 1e-9:
            failures.append(f"{when}: features differ: {agreement['worst']}")
        flat = [n for n in SUBSET if duck[n].astype("float64").nunique() <= 1]
        if flat:
            failures.append(f"{when}: constant features (nothing compared): {flat}")
    changed = pand.assign(gmv=pand["gmv"] * 1.01, mean_rating=np.nan)
    worst = compare(changed, pand)["worst"]
    if not (worst["gmv"] > 1e-3 and worst["mean_rating"] == float("inf")):
        failures.append(f"compare misses changed features: {worst}")
    if worst["order_count"] != 0.0:
        failures.append(f"compare flags an unchanged feature: {worst}")
    for failure in failures:
        print(f"FAILED {failure}")
    print("self-check " + ("failed" if failures else "passed"))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", type=Path)
    parser.add_argument("--stores", type=int, help="generate a marketplace of this size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--pandas-stores", type=int, help="run the subsets on a store sample")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(PHASES))
    parser.add_argument("--out", type=Path, help="write all measurements as JSON")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the phases N times, report medians"
    )
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="check the pandas baseline against DuckDB on a small marketplace, then exit",
    )
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    parser.add_argument("--phase-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phase-result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sample", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.self_check:
        return self_check(Path(tempfile.mkdtemp(prefix="bench_features_check_", dir=args.workdir)))
    if args.phase:  # child process: one phase, measurements to --phase-result
        as_of = pd.Timestamp(args.as_of)
        fn = PHASES[args.phase]
        measured = fn(args.histories, as_of=as_of, out=args.phase_out, sample=args.sample)
        measured["peak_rss_bytes"] = _peak_rss_bytes()
        args.phase_result.write_text(json.dumps(measured))
        return 0

    histories = args.histories
    if histories is None:
        if args.stores is None:
            parser.error("give --histories or --stores")
        from features.synth.generate import generate_marketplace

        histories = args.workdir / f"bench_m{args.stores}_seed{args.seed}"
        if not (histories / "synth.json").exists():
            generate_marketplace(histories, args.stores, args.seed, force=True)
    histories = histories.resolve()

    from features.build import default_as_of
    from features.contract.histories import open_histories
    from features.settings import duckdb_connection

    as_of = default_as_of(open_histories(histories, duckdb_connection()))
    events = event_counts(histories)
    n_events = sum(events.values())
    n_subset_events = sum(events[t] for t in SUBSET_TABLES)
    work = Path(tempfile.mkdtemp(prefix="bench_features_", dir=args.workdir))
    sample = None
    if args.pandas_stores:
        stores = pd.read_parquet(histories / "stores.parquet", columns=["store_id"])
        chosen = stores.sample(min(args.pandas_stores, len(stores)), random_state=0)
        sample = work / "sample.parquet"
        chosen.to_parquet(sample, index=False)

    results: dict = {
        "histories": str(histories),
        "as_of": str(as_of),
        "events": events,
        "cpu_count": os.cpu_count(),
        "subset": list(SUBSET),
        "pandas_stores": args.pandas_stores,
    }
    # Repetitions interleave the phases, so that a busier moment of the machine weighs on
    # both sides of the comparison alike; each phase reports its median run.
    runs: dict[str, list[dict]] = {}
    for _ in range(max(1, args.repeat)):
        for name in PHASES:
            if name not in args.skip:
                use_sample = sample if name.startswith("subset") else None
                runs.setdefault(name, []).append(
                    _run_phase(name, histories, work, as_of, use_sample)
                )
    for name, measured in runs.items():
        results[name] = _median_run(measured)

    lines = [f"events {n_events:,} (subset tables {n_subset_events:,}), as of {as_of}"]
    for name in PHASES:
        r = results.get(name)
        if not r or r.get("failed"):
            lines.append(f"{name:14s} {'skipped' if not r else 'FAILED'}")
            continue
        counted = n_events if name in ("validate", "full") else n_subset_events
        rate = counted / r["seconds"]
        r["events_per_second"] = rate
        spread = ""
        if len(r["runs"]) > 1:
            spread = f"  (runs {min(r['runs']):.1f}-{max(r['runs']):.1f} s)"
        lines.append(
            f"{name:14s} {r['seconds']:8.1f} s  {rate / 1e6:7.2f} M events/s  "
            f"peak RSS {r['peak_rss_bytes'] / 2**30:5.2f} GiB{spread}"
        )
    duck, pand = results.get("subset-duckdb"), results.get("subset-pandas")
    if duck and pand and not duck.get("failed") and not pand.get("failed"):
        results["subset_ratio"] = pand["seconds"] / duck["seconds"]
        paired = [p / d for p, d in zip(pand["runs"], duck["runs"], strict=True)]
        results["subset_ratio_per_repetition"] = paired
        results["agreement"] = compare(
            pd.read_parquet(work / "subset-duckdb.parquet"),
            pd.read_parquet(work / "subset-pandas.parquet"),
        )
        worst = max(results["agreement"]["worst"].values())
        lines.append(
            f"pandas / duckdb on the shared subset: {results['subset_ratio']:.1f}x "
            f"(per repetition {min(paired):.1f}-{max(paired):.1f}x); "
            f"largest relative difference {worst:.2e} over {results['agreement']['rows']:,} rows"
        )
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
