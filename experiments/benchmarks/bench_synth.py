"""Benchmark the synthetic marketplace: wall time, peak memory, events/s and the shape.

Usage (runs above ~100k stores must hold the shared lock):

    uv run --frozen python -m experiments.benchmarks.bench_synth \\
        --stores 20000 --seed 7 --out /work/scratch/synth/m20000_seed7 --force
    flock /tmp/spotcheck-heavy.lock uv run --frozen python -m experiments.benchmarks.bench_synth \\
        --stores 1000000 --seed 1 --out /work/scratch/synth/m1000000_seed1 --force

Prints one JSON object (also written next to the output as ``<out>.bench.json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from features.synth.generate import generate_marketplace


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()

    blocks: list[float] = []
    began = time.perf_counter()

    def progress(done: int, total: int, events: int) -> None:
        blocks.append(time.perf_counter() - began)
        print(f"block {done}/{total}: {events:,} events, {blocks[-1]:.1f} s", flush=True)

    summary = generate_marketplace(
        args.out, args.stores, seed=args.seed, force=args.force, progress=progress
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {
        "stores": args.stores,
        "seed": args.seed,
        "out": str(args.out),
        "seconds": round(summary.seconds, 1),
        "peak_rss_mib": round(peak_mib),
        "events": summary.events,
        "events_per_second": round(summary.events / summary.seconds),
        "output_mib": round(_dir_bytes(args.out) / 2**20),
        "shape": summary.manifest(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.with_name(args.out.name + ".bench.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
