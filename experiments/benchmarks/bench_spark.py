"""Benchmark the feature build on DuckDB against Spark ``local[N]``, side by side.

For each histories directory, two phases, each in its own subprocess (clean memory, and a
Spark JVM that ends with its phase):

* ``duckdb``: ``build_feature_table`` (all store and link-graph features, no validation);
* ``spark``: ``build_feature_table_spark`` written as Parquet parts (the same table:
  the equivalence tests compare every value), on ``local[N]``.

Both build the table as of the end of the histories. Events are rows of listings, orders,
reviews, disputes and logins. The report gives wall time, events/s, Spark's time over
DuckDB's, and how Spark's time grows with the marketplace.

Usage::

    flock /tmp/spotcheck-heavy.lock uv run --frozen python -m \\
        experiments.benchmarks.bench_spark --histories SMALL --histories BIG \\
        [--master local[2]] [--driver-memory 8g] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENT_TABLES = ("listings", "orders", "reviews", "disputes", "logins")


def count_events(histories: Path) -> dict[str, int]:
    """Rows per event table (and stores), from the Parquet metadata."""
    import pyarrow.parquet as pq

    from features.contract.histories import find_table_source

    counts = {}
    for table in (*EVENT_TABLES, "stores"):
        source = find_table_source(histories, table)
        files = sorted(source.glob("*.parquet")) if source.is_dir() else [source]
        counts[table] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return counts


def phase_duckdb(histories: Path, out: Path, **_) -> dict:
    """The DuckDB build, its table kept in memory (as the CLI does before writing)."""
    from features.build import build_feature_table

    started = time.perf_counter()
    table, spec = build_feature_table(histories, validate=False)
    return {"seconds": time.perf_counter() - started, "rows": len(table), "spec": spec.hash}


def phase_spark(histories: Path, out: Path, master: str, driver_memory: str) -> dict:
    """The Spark build, written as Parquet parts (Spark computes when it writes)."""
    from features.spark_build import build_feature_table_spark, write_feature_table_spark
    from features.spark_session import spark_session

    started = time.perf_counter()
    spark = spark_session(master, driver_memory=driver_memory)
    up = time.perf_counter() - started
    table, spec = build_feature_table_spark(spark, histories)
    write_feature_table_spark(table, spec, out)
    seconds = time.perf_counter() - started
    rows = spark.read.parquet(str(out)).count()
    parts = len(list(out.glob("*.parquet")))
    spark.stop()
    return {"seconds": seconds, "session_seconds": up, "rows": rows, "parts": parts,
            "spec": spec.hash}  # fmt: skip


PHASES = {"duckdb": phase_duckdb, "spark": phase_spark}


def run_phase(name: str, histories: Path, args: argparse.Namespace) -> dict:
    """Run one phase in a subprocess and return its JSON result."""
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        command = [
            sys.executable, "-m", "experiments.benchmarks.bench_spark", "--phase", name,
            "--histories", str(histories), "--master", args.master,
            "--driver-memory", args.driver_memory, "--work", str(Path(tmp) / "table"),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"phase {name} on {histories} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=Path, action="append", required=True)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.phase:
        result = PHASES[args.phase](
            args.histories[0], args.work, master=args.master, driver_memory=args.driver_memory
        )
        print(json.dumps(result))
        return
    report = []
    for histories in args.histories:
        events = count_events(histories)
        total = sum(events[t] for t in EVENT_TABLES)
        row = {"histories": str(histories), "stores": events["stores"], "events": total}
        for name in ("duckdb", "spark"):
            result = run_phase(name, histories, args)
            result["events_per_second"] = total / result["seconds"]
            row[name] = result
            print(f"{histories.name}: {name} {result['seconds']:.1f} s "
                  f"({result['events_per_second']:,.0f} events/s)", file=sys.stderr)  # fmt: skip
        assert row["duckdb"]["rows"] == row["spark"]["rows"], "the engines built other rows"
        assert row["duckdb"]["spec"] == row["spark"]["spec"], "the engines built other specs"
        row["spark_over_duckdb"] = row["spark"]["seconds"] / row["duckdb"]["seconds"]
        report.append(row)
    if len(report) > 1:
        first, last = report[0], report[-1]
        growth = {
            "events": last["events"] / first["events"],
            "spark_seconds": last["spark"]["seconds"] / first["spark"]["seconds"],
            "duckdb_seconds": last["duckdb"]["seconds"] / first["duckdb"]["seconds"],
        }
        report.append({"growth_first_to_last": growth})
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
