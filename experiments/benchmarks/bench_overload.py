"""Benchmark what BentoML's known overload behaviours cost spotcheck's service, and its guards.

BentoML 1.4.39 (see issue 12) puts a service's own middleware inside its concurrency
limit, so requests refused for a missing token hold a slot while they are refused; and at
``traffic.timeout`` it answers 504 and frees the slot while the sync handler runs on
(bentoml #5642). One run, on 127.0.0.1:

* ``spotcheck serve`` with ``SPOTCHECK_API_TOKEN`` set (default limits, 32 concurrent):
  authenticated single-store ``/score`` requests on a fixed timetable (``--rate``/s for
  ``--seconds``, latency from the scheduled send, as ``bench_serving``) alone, then with
  ``--flood`` unauthenticated clients sending back to back beside them (each gets a 401):
  the authenticated p50/p99 and 429s, and how many 401s/s the flood got;
* ``spotcheck serve --timeout T --max-concurrency 4``: ``--clients`` clients send
  ``--batch-size``-store requests back to back for ``--seconds`` (each ~0.5 s of work, so
  they queue past the timeout): the answers by status, the most requests whose work ran
  at once (``spotcheck_work_peak``, counted in the handler; BentoML counts 4 at most) and
  how long work still ran after the last answer.

The load generator shares the machine's cores with the server.

Usage (after ``make demo``)::

    MLFLOW_TRACKING_URI=sqlite:///demo/mlflow.db BENTOML_HOME=/tmp/bentoml uv run python \\
        -m experiments.benchmarks.bench_overload --features demo/features.parquet \\
        [--model models:/counterfeit-store-classifier@champion] [--out bench_overload.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd

from experiments.benchmarks.bench_serving import (
    HEADERS,
    Server,
    _free_port,
    _ours_body,
    _records,
    closed_loop,
    open_loop,
)

TOKEN = "bench-overload-token"


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))


def _start(name: str, extra: list[str], env: dict, logs: Path, args) -> Server:
    port = _free_port()
    command = [str(Path(sys.executable).with_name("spotcheck")), "serve", "--model", args.model,
               "--port", str(port), "--follow-seconds", "0", *extra]  # fmt: skip
    server = Server(name, command, port, "/readyz", logs / f"{name}.log")
    server.start(env, args.startup_timeout)
    return server


def floods(env: dict, logs: Path, single: list[bytes], args) -> dict:
    """Authenticated traffic alone and beside unauthenticated floods (another process)."""
    server = _start("auth", [], {**env, "SPOTCHECK_API_TOKEN": TOKEN}, logs, args)
    authorized = {**HEADERS, "Authorization": f"Bearer {TOKEN}"}
    out = {}
    try:
        open_loop(server.port, "/score", single, args.rate, 2.0, args, authorized)  # warm-up
        # A flood on /score (refused with 401 inside BentoML's concurrency limit), and one on
        # /livez (outside it, no token needed): the same cost per request but no slot held.
        for path, clients in (("/score", 0), *[("/score", c) for c in args.flood],
                              ("/livez", args.flood[0])):  # fmt: skip
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                flood = pool.apply_async(
                    _flood, (server.port, path, single[:50], clients, args.seconds + 1, args)
                )
                time.sleep(1.0 if clients else 0)  # the flood is on before the timetable
                ours = open_loop(server.port, "/score", single, args.rate, args.seconds, args,
                                 authorized)  # fmt: skip
                flooded = flood.get(timeout=args.seconds + 120)
            out[f"flood_{path.strip('/')}_{clients}"] = {"authenticated": ours, "flood": flooded}
            _print_flood(path, clients, ours, flooded)
    finally:
        server.stop()
    return out


def _flood(port: int, path: str, bodies: list[bytes], clients: int, seconds: float, args):
    """Unauthenticated clients sending back to back (run in a process of its own)."""
    if not clients:
        return {}
    if path == "/score":
        return closed_loop(port, path, bodies, clients, seconds, args)
    return _get_loop(port, path, clients, seconds)


def _get_loop(port: int, path: str, clients: int, seconds: float) -> dict:
    import http.client

    answers: Counter = Counter()
    stop = time.perf_counter() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < stop:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            answers[str(response.status)] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"errors": dict(answers), "seconds": seconds}


def _print_flood(path: str, clients: int, ours: dict, flood: dict) -> None:
    errors = ", ".join(f"{k} {v}" for k, v in ours["errors"].items()) or "none"
    line = (f"  {clients:>2} unauthenticated clients on {path}: authenticated p50 "
            f"{ours.get('p50_ms', float('nan')):.2f} ms, p99 {ours.get('p99_ms', float('nan')):.2f}"
            f" ms, {ours['ok']}/{ours['requests']} answered 200 (others: {errors})")  # fmt: skip
    if flood:
        got = Counter(flood["errors"])
        per_second = sum(got.values()) / flood["seconds"]
        line += f"; the flood got {per_second:,.0f} answers/s ({dict(got)})"
    print(line)


def timeouts(env: dict, logs: Path, batch: bytes, args) -> dict:
    """Batches queueing past the timeout: statuses, work running at once, work left after."""
    extra = ["--timeout", str(args.timeout), "--max-concurrency", "4"]
    server = _start("timeout", extra, env, logs, args)
    try:
        running_seen: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                running_seen.append(_metric(server.port, "spotcheck_work_running"))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        result = closed_loop(server.port, "/score", [batch], args.clients, args.seconds, args)
        answered = time.perf_counter()
        while _metric(server.port, "spotcheck_work_running") > 0:
            time.sleep(0.02)
        left = time.perf_counter() - answered
        stop.set()
        watcher.join()
        peak = _metric(server.port, "spotcheck_work_peak")
    finally:
        server.stop()
    statuses = {"200": result["ok"], **result["errors"]}
    print(f"  timeout {args.timeout} s, {args.clients} clients of {args.batch_size} stores: "
          f"{statuses}; work of {peak:.0f} requests ran at once (limit 4; most seen by polling "
          f"{max(running_seen, default=0):.0f}); work ran on {left:.2f} s after the last "
          "answer")  # fmt: skip
    return {"statuses": statuses, "peak": peak, "polled_max": max(running_seen, default=0),
            "work_left_seconds": left, "timeout": args.timeout}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models:/counterfeit-store-classifier@champion")
    parser.add_argument("--features", type=Path, required=True, help="a written feature table")
    parser.add_argument("--rate", type=float, default=100.0, help="authenticated requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--flood", type=int, nargs="+", default=[8, 64], help="flood clients")
    parser.add_argument("--clients", type=int, default=8, help="batch clients (timeouts)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=1.0, help="server timeout (s)")
    parser.add_argument("--in-flight", type=int, default=32, help="open-loop requests at most")
    parser.add_argument("--drain", type=float, default=15.0, help="open-loop grace seconds")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--out", type=Path, help="write the measurements as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    spec = json.loads(Path(f"{args.features}.spec.json").read_text())
    names = [f["name"] for f in spec["features"]]
    table = pd.read_parquet(args.features).sample(frac=1.0, random_state=0)
    ids = table["store_id"].astype(str).tolist()
    records = _records(table, names)
    single = [_ours_body([i], [r]) for i, r in zip(ids[:2000], records[:2000], strict=True)]
    size = args.batch_size
    batch = _ours_body(ids[:size], records[:size])
    logs = Path(tempfile.mkdtemp(prefix="bench_overload-"))
    bin_dir = Path(sys.executable).parent
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"}
    print(f"{args.model}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"logs in {logs}")  # fmt: skip
    results = {"args": {k: str(v) for k, v in vars(args).items()}}
    print("unauthenticated floods beside authenticated traffic")
    results["floods"] = floods(env, logs, single, args)
    print("requests past the timeout")
    results["timeouts"] = timeouts(env, logs, batch, args)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
