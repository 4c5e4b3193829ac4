"""Benchmark link-graph features: login_links, one as-of for all stores, training rows.

Synthetic marketplace logins (numpy, seeded): counterfeit rings of 3-30 stores share a few
devices, Wi-Fi networks and IPs; genuine stores use their own devices, home or office Wi-Fi
(offices shared by 2-8 stores), a few residential IPs, and carrier-NAT IPs shared by hundreds
of stores (which the IP cap must ignore).

Usage (heavy runs must hold the shared lock):

    flock /tmp/spotcheck-heavy.lock uv run --frozen python -m experiments.benchmarks.bench_links \\
        --stores 1000000 --logins-per-store 25 --out /work/scratch/links/bench
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract.histories import connect, open_histories
from features.links import add_link_features, login_links, neighbour_snapshots

DAYS = 730
T0 = pd.Timestamp("2023-01-01")


def make_logins(
    n_stores: int, per_store: float, seed: int, out: Path, stores_per_nat_ip: int = 200
) -> pd.DataFrame:
    """Write ``out/logins.parquet`` and return labels; ids are built in DuckDB for speed."""
    rng = np.random.default_rng(seed)
    opened = rng.uniform(0, DAYS - 30, n_stores)
    # Rings: 4% of stores, sizes 3-30.
    ring = np.full(n_stores, -1)
    ring_stores = rng.permutation(n_stores)[: int(0.04 * n_stores)]
    sizes = rng.integers(3, 31, len(ring_stores) // 3 + 1)
    ring_of = np.repeat(np.arange(len(sizes)), sizes)[: len(ring_stores)]
    ring[ring_stores] = ring_of
    office = np.where(rng.random(n_stores) < 0.1, rng.integers(0, n_stores // 5, n_stores), -1)

    n = rng.poisson(per_store, n_stores) + 1
    store = np.repeat(np.arange(n_stores), n)
    m = len(store)
    t = opened[store] + rng.random(m) * (DAYS - opened[store])
    in_ring = ring[store] >= 0
    u = rng.random((3, m))
    # Devices: own (1-2 per store) or, for ring stores half the time, one of 2 ring devices.
    device = np.where(
        in_ring & (u[0] < 0.5),
        10_000_000 + ring[store] * 2 + rng.integers(0, 2, m),
        store * 2 + rng.integers(0, 2, m),
    )
    # Wi-Fi: ring Wi-Fi, office Wi-Fi, home Wi-Fi, or none (-1).
    wifi = np.where(u[1] < 0.3, -1, store)
    wifi = np.where((office[store] >= 0) & (u[1] > 0.6), 20_000_000 + office[store], wifi)
    wifi = np.where(in_ring & (u[1] > 0.5), 30_000_000 + ring[store], wifi)
    # IPs: residential (3 per store), carrier NAT (by default one IP per 200 stores, so each
    # is used by thousands and passes the cap within days), random, or ring IPs. With one NAT
    # IP per store, each is used by ~10 stores: under the cap, chaining most stores into one
    # giant component (the stress case for ring search).
    nat = max(1, n_stores // stores_per_nat_ip)
    ip = np.where(u[2] < 0.5, store * 3 + rng.integers(0, 3, m), 0)
    ip = np.where(u[2] >= 0.5, 40_000_000 + rng.integers(0, nat, m), ip)
    ip = np.where(u[2] >= 0.9, 50_000_000 + rng.integers(0, 50 * n_stores, m), ip)
    ip = np.where(in_ring & (u[2] < 0.4), 60_000_000 + ring[store] * 3 + rng.integers(0, 3, m), ip)
    raw = pd.DataFrame({"store": store, "t": t, "ip": ip, "device": device, "wifi": wifi})
    out.mkdir(parents=True, exist_ok=True)
    con = connect()
    con.register("raw", raw)
    con.execute(
        f"""COPY (SELECT 's' || store AS store_id,
                  TIMESTAMP '{T0}' + to_microseconds(CAST(t * 86400e6 AS BIGINT)) AS logged_at,
                  'ip' || ip AS ip, 'd' || device AS device_id,
                  CASE WHEN wifi < 0 THEN NULL ELSE 'w' || wifi END AS wifi_id
           FROM raw) TO '{out / "logins.parquet"}' (FORMAT parquet)"""
    )
    # Labels: 30% of ring stores counterfeit, 2% of the others genuine, at random times.
    labelled = np.concatenate(
        [
            ring_stores[rng.random(len(ring_stores)) < 0.3],
            rng.choice(np.flatnonzero(ring < 0), int(0.02 * n_stores), replace=False),
        ]
    )
    labels = pd.DataFrame(
        {
            "store_id": "s" + pd.Series(labelled).astype(str),
            "is_counterfeit": (ring[labelled] >= 0).astype(int),
            "labeled_at": T0
            + pd.to_timedelta(opened[labelled] + rng.uniform(10, 30, len(labelled)), unit="D"),
        }
    )
    labels.to_parquet(out / "labels.parquet")
    return labels


def timed(label: str, repeat: int, func, *args, **kwargs):
    """Run ``func`` ``repeat`` times; print the best and all times (the machine is shared)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = func(*args, **kwargs)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(
        f"{label}: best {min(times):.2f} s of [{runs}] (peak RSS so far {peak:.2f} GB)", flush=True
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=100_000)
    parser.add_argument("--logins-per-store", type=float, default=25)
    parser.add_argument("--training-rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stores-per-nat-ip", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("/work/scratch/links/bench"))
    parser.add_argument("--memory-limit", default="6GB", help="DuckDB memory_limit")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed step")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse logins/labels already generated in --out"
    )
    args = parser.parse_args()

    if args.reuse:
        labels = pd.read_parquet(args.out / "labels.parquet")
    else:
        labels = timed(
            "generate logins",
            1,
            make_logins,
            args.stores,
            args.logins_per_store,
            args.seed,
            args.out,
            args.stores_per_nat_ip,
        )
    con = open_histories(args.out, tables=("logins",))
    con.execute(
        f"SET threads = 2; SET memory_limit = '{args.memory_limit}'; "
        "SET enable_progress_bar = false"
    )
    n_logins = con.execute("SELECT count(*) FROM logins").fetchone()[0]
    print(f"logins: {n_logins:,}; stores: {args.stores:,}; labels: {len(labels):,}")
    links = timed("login_links", args.repeat, login_links, con)
    print(f"link rows: {len(links):,} ({links['kind'].value_counts().to_dict()})")

    rng = np.random.default_rng(args.seed)
    stores = "s" + pd.Series(np.arange(args.stores)).astype(str)
    numeric = {f"x{i}": rng.normal(size=args.stores) for i in range(10)}
    one_as_of = pd.DataFrame({"store_id": stores, "as_of": T0 + pd.Timedelta(days=DAYS)} | numeric)
    out, spec = timed(
        f"add_link_features, one as_of, {args.stores:,} rows",
        args.repeat,
        add_link_features,
        one_as_of,
        links,
        labels,
    )
    print(
        f"  {len(spec)} link features; mean ring size {out['link_ring_size'].mean():.2f}; "
        f"rows with a known-counterfeit neighbour {(out['link_known_counterfeit'] > 0).mean():.2%}"
    )

    # Training rows: labelled stores at their labeled_at, plus random (store, time) rows.
    n_extra = max(0, args.training_rows - len(labels))
    training = pd.concat(
        [
            labels[["store_id", "labeled_at"]].rename(columns={"labeled_at": "as_of"}),
            pd.DataFrame(
                {
                    "store_id": stores.sample(
                        n_extra, replace=True, random_state=args.seed
                    ).to_numpy(),
                    "as_of": T0 + pd.to_timedelta(rng.uniform(30, DAYS, n_extra), unit="D"),
                }
            ),
        ],
        ignore_index=True,
    ).drop_duplicates(["store_id", "as_of"])
    training = training.assign(**{k: rng.normal(size=len(training)) for k in numeric})
    print(f"training rows: {len(training):,}, distinct as_of: {training['as_of'].nunique():,}")
    out, _ = timed(
        "add_link_features, training rows", args.repeat, add_link_features, training, links, labels
    )
    print(f"  mean ring size {out['link_ring_size'].mean():.2f}; max {out['link_ring_size'].max()}")
    extra = timed(
        "neighbour_snapshots, training rows",
        args.repeat,
        neighbour_snapshots,
        training[["store_id", "as_of"]],
        links,
    )
    print(f"  {len(extra):,} extra neighbour snapshots")
    timed(
        "add_link_features, 1 row (online scoring)",
        args.repeat,
        add_link_features,
        one_as_of.iloc[[0]],
        links,
        labels,
    )


if __name__ == "__main__":
    main()
