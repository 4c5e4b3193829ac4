"""How many LightGBM threads by default: 1 vs every core, on an idle and on a busy machine.

Cross-validates the default parameters (the recipe ``spotcheck train`` runs) on a feature
table with truth labels, with ``num_threads`` 1 and all cores, first on an idle machine, then
while another process keeps one core busy (as a second training, a feature build or a
service does on a shared 2-core machine). Each case runs ``--repeat`` times; the median is
reported. LightGBM's OpenMP threads spin while waiting for each other, so a thread that
loses its core stalls the others.

Usage::

    uv run python -m experiments.benchmarks.bench_threads \\
        --features demo/features.parquet --truth demo/histories/truth.parquet
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import pandas as pd


def _spin(stop: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    """Keep one core busy until told to stop (the competing workload)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _seconds(run, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        out.append(time.perf_counter() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from features.build import feature_spec
    from features.settings import available_cores
    from training.crossfit import cross_validate, cv_dataset, make_folds
    from training.model import default_params, fixed_params

    table = pd.read_parquet(args.features).head(args.rows)
    truth = pd.read_parquet(args.truth)
    frame = table.merge(truth[["store_id", "is_counterfeit"]], on="store_id")
    spec = feature_spec()
    folds = make_folds(frame["is_counterfeit"].to_numpy(), None, seed=0)
    cores = available_cores()
    results: dict[str, dict[str, float]] = {}
    for load in ("idle", "one core busy"):
        stop = multiprocessing.Event()
        competitor = None
        if load != "idle":
            competitor = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
            competitor.start()
        try:
            for threads in sorted({1, cores}):
                params = {**fixed_params(0, threads), **default_params()}
                dataset = cv_dataset(frame, spec, {}, params)
                runs = _seconds(
                    lambda p=params, d=dataset: cross_validate(p, d, folds), args.repeat
                )
                results[f"{load}, {threads} thread(s)"] = {
                    "median_s": statistics.median(runs),
                    "runs": runs,
                }
        finally:
            stop.set()
            if competitor is not None:
                competitor.join()
    print(f"{len(frame):,} rows x {len(spec)} features, {len(folds.pairs)}-fold cross-validation")
    for case, r in results.items():
        runs = ", ".join(f"{s:.2f}" for s in r["runs"])
        print(f"  {case:28s} {r['median_s']:7.2f} s  (runs {runs})")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
