"""Benchmark scoring a registered model: one store online, and a batch, each path side by side.

The model is loaded through MLflow exactly as users load it (``--model``, default the
champion in the MLflow store ``MLFLOW_TRACKING_URI`` points at). Paths measured in one run:

* ``pyfunc``: ``mlflow.pyfunc.load_model(uri).predict(frame)``, the generic MLflow path
  (MLflow's schema enforcement, then the scorer) - the baseline;
* ``frame``: the scorer's ``score_frame`` (one vectorised conversion, no MLflow wrapper);
* ``records``: the scorer's ``score_records`` fast path (a plain mapping per store, no pandas);
* ``booster raw`` / ``booster contrib``: LightGBM's own ``predict`` for the same matrix, the
  floor of any path (raw margin only / with TreeSHAP contributions).

Every path returns a score with its reasons except the booster floors. Single-store latency is
the median and p99 over ``--calls`` calls, each on one store of the table in turn; batch
throughput is stores per second over ``--rows`` rows (the table repeated as needed).

Usage (after ``make demo``)::

    cd demo && MLFLOW_TRACKING_URI=sqlite:///mlflow.db uv run --project .. python -m \\
        experiments.benchmarks.bench_scoring --features features.parquet [--rows 100000]

(run from the project root with ``--features demo/features.parquet`` and the URI set the
same way; ``--model`` takes any ``models:/`` or ``runs:/`` URI).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd


def _latencies_ms(call: Callable[[int], object], calls: int, rows: int) -> dict[str, float]:
    """Median and p99 of ``call(i)`` in ms over ``calls`` calls (rows cycled), after warm-up."""
    for i in range(min(20, calls)):
        call(i % rows)
    times = []
    for i in range(calls):
        started = time.perf_counter_ns()
        call(i % rows)
        times.append((time.perf_counter_ns() - started) / 1e6)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))],
    }


def _throughput(call: Callable[[], object], rows: int, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` seconds and stores per second of one batch call."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    best = min(seconds)
    return {"seconds": best, "stores_per_second": rows / best, "runs": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models:/counterfeit-store-classifier@champion")
    parser.add_argument("--features", type=Path, required=True, help="a written feature table")
    parser.add_argument("--calls", type=int, default=2000, help="single-store calls per path")
    parser.add_argument("--rows", type=int, default=100_000, help="batch size")
    parser.add_argument("--repeat", type=int, default=3, help="batch repetitions (best kept)")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON")
    args = parser.parse_args(argv)

    import mlflow.pyfunc

    from features.scoring.encoding import encode_features
    from features.scoring.model import scorer_of
    from features.tracking import connect

    connect()
    model = mlflow.pyfunc.load_model(args.model)
    scorer = scorer_of(model)
    spec, booster = scorer.spec, scorer.booster_
    table = pd.read_parquet(args.features)
    sample = table.sample(min(len(table), 1000), random_state=0).reset_index(drop=True)
    one_row_frames = [sample.iloc[[i]] for i in range(len(sample))]
    records = sample[spec.names].to_dict(orient="records")
    matrix = encode_features(sample, spec, scorer.levels_)

    paths = {
        "pyfunc": lambda i: model.predict(one_row_frames[i]),
        "frame": lambda i: scorer.score_frame(one_row_frames[i]),
        "records": lambda i: scorer.score_records([records[i]]),
        "booster raw": lambda i: booster.predict(matrix[i : i + 1], raw_score=True),
        "booster contrib": lambda i: booster.predict(matrix[i : i + 1], pred_contrib=True),
    }
    single = {name: _latencies_ms(call, args.calls, len(sample)) for name, call in paths.items()}
    reps = -(-args.rows // len(table))
    batch_table = pd.concat([table] * reps, ignore_index=True).head(args.rows)
    batch_matrix = encode_features(batch_table, spec, scorer.levels_)
    batch = {
        "pyfunc": _throughput(lambda: model.predict(batch_table), args.rows, args.repeat),
        "frame": _throughput(lambda: scorer.score_frame(batch_table), args.rows, args.repeat),
        "booster contrib": _throughput(
            lambda: booster.predict(batch_matrix, pred_contrib=True), args.rows, args.repeat
        ),
    }
    trees = booster.num_trees()
    dump = booster.dump_model()["tree_info"]
    leaves = [t["num_leaves"] for t in dump]
    results = {
        "model": args.model,
        "trees": trees,
        "max_leaves": max(leaves) if leaves else 0,
        "mean_leaves": float(np.mean(leaves)) if leaves else 0.0,
        "features": len(spec),
        "cpu_count": os.cpu_count(),
        "lightgbm_threads": booster.params.get("num_threads"),
        "single_store": single,
        "batch_rows": args.rows,
        "batch": batch,
        "load_average": os.getloadavg(),
    }
    print(
        f"{args.model}: {trees} trees (leaves up to {results['max_leaves']}), "
        f"{len(spec)} features; load average {results['load_average'][0]:.2f}"
    )
    print("one store, with reasons   median      p99")
    for name, r in single.items():
        print(f"  {name:20s} {r['median_ms']:8.3f} ms {r['p99_ms']:8.3f} ms")
    ratio = single["pyfunc"]["median_ms"] / single["records"]["median_ms"]
    print(f"  pyfunc / records: {ratio:.0f}x")
    print(f"batch of {args.rows:,} stores      seconds   stores/s")
    for name, r in batch.items():
        print(f"  {name:20s} {r['seconds']:8.2f} {r['stores_per_second']:10,.0f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
