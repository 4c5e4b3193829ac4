"""Benchmark serving one model over HTTP: spotcheck's service, MLflow's server, in-process.

One run starts, on 127.0.0.1 and one after the other (never two measured at once, the
load generator shares the machine with them), and measures with the same requests:

* ``spotcheck serve``: BentoML's server (one worker) with ``POST /score``, every score with
  its reasons both ways;
* ``mlflow models serve --env-manager local``: MLflow's generic scoring server on the same
  model (``POST /invocations`` with ``dataframe_split``), the peer a user would pick. It
  runs the same pyfunc model, so it also returns the reasons, through MLflow's generic path
  (JSON to DataFrame, schema enforcement, ``predict``, DataFrame to JSON records, where the
  reason lists and group sums are JSON strings inside the JSON);
* in-process: ``scorer_of(mlflow.pyfunc.load_model(uri)).score_records(records)`` on the
  same stores in this process (the ceiling of any server), and the pyfunc ``predict`` on a
  DataFrame as a second in-process figure.

Per server:

* ``open loop``: single-store requests on a fixed timetable of ``--rate`` requests/s for
  ``--seconds``; latency is counted from each request's scheduled send time, so a server
  (or client) that falls behind shows it instead of slowing the generator down (no
  coordinated omission). At most ``--in-flight`` requests are outstanding (spotcheck's
  service answers 429 past 32); requests still unsent ``--drain`` seconds after the last
  scheduled time are counted as ``unsent`` with their wait so far (a lower bound);
* ``saturation``: ``--clients`` closed-loop clients send single-store requests back to back
  for ``--saturation-seconds``: throughput and latency from the send;
* ``batch``: ``--batches`` sequential requests of ``--batch-size`` stores each: stores/s.

Single-store requests cycle through ``--stores`` distinct real rows of the feature table;
batches are other real rows. Non-200 answers and connection errors are counted per kind and
left out of the percentiles; the slowest requests are listed with the time they were sent
(clustered times mean a stall). The load generator is the standard library's
``http.client`` on keep-alive connections, one thread per client. The generator, the server
and whatever else runs share the cores, so each phase records the cores used by the
server's processes, by this process and by everything else (``cores``, from ``/proc``).
Scores of the first batch are compared across the three paths.

Usage (after ``make demo``)::

    MLFLOW_TRACKING_URI=sqlite:///demo/mlflow.db BENTOML_HOME=/tmp/bentoml uv run python \\
        -m experiments.benchmarks.bench_serving --features demo/features.parquet \\
        [--model models:/counterfeit-store-classifier@champion] [--rate 100] [--seconds 20] \\
        [--out bench_serving.json]

Targets (2 cores): single-store p99 with reasons < 20 ms at 100 requests/s and at most half
the peer's p99; batch throughput with reasons at least half the in-process ceiling.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

HEADERS = {"Content-Type": "application/json", "Connection": "keep-alive"}
SLOWEST = 10
P99_TARGET_MS = 20.0
PEER_RATIO_TARGET = 0.5
CEILING_SHARE_TARGET = 0.5


# --- requests ------------------------------------------------------------------------------


def _plain(value: object) -> object:
    """A JSON value: numpy scalars as Python, NaN / NA / NaT as null."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(frame: pd.DataFrame, names: list[str]) -> list[dict]:
    """Feature mappings of the rows, as the service receives them after JSON."""
    columns = {n: frame[n].tolist() for n in names}
    return [{n: _plain(columns[n][i]) for n in names} for i in range(len(frame))]


def _ours_body(ids: list[str], records: list[dict]) -> bytes:
    stores = [{"store_id": i, "features": r} for i, r in zip(ids, records, strict=True)]
    return json.dumps({"stores": stores}, allow_nan=False).encode()


def _peer_body(names: list[str], records: list[dict]) -> bytes:
    data = [[r[n] for n in names] for r in records]
    split = {"columns": names, "data": data}
    return json.dumps({"dataframe_split": split}, allow_nan=False).encode()


# --- servers -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A server process in its own process group, its port and log."""

    name: str
    command: list[str]
    port: int
    ready_path: str
    log: Path
    process: subprocess.Popen | None = None
    startup_seconds: float | None = None

    def start(self, env: dict[str, str], timeout: float) -> None:
        """Start the process and wait for ``ready_path`` to answer 200.

        Raises:
            RuntimeError: The process exited or was not ready in ``timeout`` seconds.
        """
        started = time.perf_counter()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}: {self.log_tail()}"
                )
            if _get_status(self.port, self.ready_path) == 200:
                self.startup_seconds = time.perf_counter() - started
                return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the process group; SIGKILL whatever of the server is left after 20 s."""
        if self.process is None:
            return
        tree = list(_tree(self.process.pid))  # the workers may sit in sessions of their own
        _signal_group(self.process.pid, signal.SIGTERM)
        deadline = time.perf_counter() + 20
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        while _alive(tree) and time.perf_counter() < deadline:
            time.sleep(0.2)
        _signal_group(self.process.pid, signal.SIGKILL)
        for pid, _ in _alive(tree):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False if the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _get_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# --- CPU accounting ----------------------------------------------------------------------


def _machine_ticks() -> tuple[int, int]:
    """``(busy, steal)`` clock ticks of all cores since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq + steal, steal


def _processes() -> dict[int, tuple[int, int, int]]:
    """Live processes: pid -> (parent pid, start time, user + system clock ticks)."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":  # state, ppid, ... utime (12th), stime, ..., starttime (20th)
            ticks = int(fields[11]) + int(fields[12])
            out[int(entry.name)] = (int(fields[1]), int(fields[19]), ticks)
    return out


def _tree(root: int) -> dict[tuple[int, int], int]:
    """``(pid, start time) -> clock ticks`` of a process and all its descendants.

    BentoML's workers run in sessions of their own, so a process group does not hold them.
    """
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    out, todo = {}, [root] if root in table else []
    while todo:
        pid = todo.pop()
        out[(pid, table[pid][1])] = table[pid][2]
        todo.extend(children.get(pid, []))
    return out


def _rss_mib(root: int) -> float:
    """Resident memory of a process and its descendants (MiB)."""
    pages = 0
    for pid, _ in _tree(root):
        try:
            with open(f"/proc/{pid}/statm") as f:
                pages += int(f.read().split()[1])
        except OSError:
            continue
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _alive(processes) -> list[tuple[int, int]]:
    """Those of ``(pid, start time)`` still running (the same process, not a reused pid)."""
    table = _processes()
    return [(pid, start) for pid, start in processes if table.get(pid, (0, -1))[1] == start]


class _CpuMeter:
    """Cores used during a phase: the server's processes, this process, everything else."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.tick = os.sysconf("SC_CLK_TCK")
        self.wall = time.perf_counter()
        self.machine, self.steal = _machine_ticks()
        self.server = _tree(root)
        self.client = time.process_time()

    def cores(self) -> dict[str, float]:
        """Mean cores busy since the meter started, by whom."""
        wall = time.perf_counter() - self.wall
        machine, steal = _machine_ticks()
        busy = (machine - self.machine) / self.tick / wall
        now = _tree(self.root)
        ticks = sum(t - self.server.get(p, 0) for p, t in now.items())
        server = ticks / self.tick / wall
        client = (time.process_time() - self.client) / wall
        return {
            "machine": busy,
            "server": server,
            "client": client,
            "others": max(0.0, busy - server - client),
            "steal": (steal - self.steal) / self.tick / wall,
        }


# --- load generator ------------------------------------------------------------------------


class _Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1, reopened after an error."""

    def __init__(self, port: int, timeout: float, headers: dict | None = None) -> None:
        self.port, self.timeout = port, timeout
        self.headers = headers or HEADERS
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[str, bytes]:
        """``(status or error name, body)`` of one POST."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.request("POST", path, body, self.headers)
            response = self.conn.getresponse()
            data = response.read()
            if response.will_close:
                self.close()
            return str(response.status), data
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return type(exc).__name__, b""

    def close(self) -> None:
        """Close the connection (the next post opens a new one)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class _Tally:
    """Latencies of the 200s, counts of everything else, bytes received (thread-safe)."""

    origin: float = field(default_factory=time.perf_counter)
    latencies_ms: list[float] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    response_bytes: int = 0
    unsent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, since: float, size: int) -> None:
        """Record one answer (or error) to a request sent (or scheduled) at ``since``."""
        latency = time.perf_counter() - since
        with self.lock:
            self.outcomes[outcome] += 1
            self.response_bytes += size
            if outcome == "200":
                self.latencies_ms.append(latency * 1e3)
                self.at.append(since - self.origin)

    def summary(self, wall: float) -> dict:
        """Counts, throughput and latency percentiles (ms) of the 200s (and unsent waits)."""
        times = np.asarray(self.latencies_ms)
        ok = self.outcomes.get("200", 0)
        answered = sum(self.outcomes.values())
        out = {
            "requests": answered + self.unsent,
            "ok": ok,
            "errors": {k: v for k, v in self.outcomes.items() if k != "200"},
            "unsent": self.unsent,
            "seconds": wall,
            "ok_per_second": ok / wall if wall else 0.0,
            "mean_response_bytes": self.response_bytes / answered if answered else 0.0,
        }
        if len(times):
            for name, q in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("p999_ms", 99.9)):
                out[name] = float(np.percentile(times, q))
            out["mean_ms"] = float(times.mean())
            out["max_ms"] = float(times.max())
            # When the slowest requests were sent (s into the phase): clustered, a stall.
            slowest = np.argsort(times)[::-1][:SLOWEST]
            out["slowest"] = [[round(self.at[i], 3), round(self.latencies_ms[i], 1)]
                              for i in slowest if i < len(self.at)]  # fmt: skip
        return out


def open_loop(
    port: int, path: str, bodies: list[bytes], rate: float, seconds: float, args,
    headers: dict | None = None,
) -> dict:  # fmt: skip
    """Requests on a fixed timetable; latency counted from each scheduled send time."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.1
    tally = _Tally(origin=start)
    counter = itertools.count()
    deadline = start + seconds + args.drain

    def worker() -> None:
        client = _Client(port, args.request_timeout, headers)
        while (i := next(counter)) < total:
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if time.perf_counter() > deadline:
                with tally.lock:
                    tally.unsent += 1
                    tally.latencies_ms.append((deadline - scheduled) * 1e3)
                    tally.at.append(scheduled - tally.origin)
                continue
            outcome, data = client.post(path, bodies[i % len(bodies)])
            tally.add(outcome, scheduled, len(data))
        client.close()

    _run_threads(worker, args.in_flight)
    wall = time.perf_counter() - start
    result = tally.summary(wall)
    result.update(rate=rate, scheduled=total)
    return result


def closed_loop(
    port: int, path: str, bodies: list[bytes], clients: int, seconds: float, args,
    headers: dict | None = None,
) -> dict:  # fmt: skip
    """``clients`` clients sending back to back for ``seconds``; latency from the send."""
    tally = _Tally()
    counter = itertools.count()
    stop = time.perf_counter() + seconds

    def worker() -> None:
        client = _Client(port, args.request_timeout, headers)
        while time.perf_counter() < stop:
            body = bodies[next(counter) % len(bodies)]
            sent = time.perf_counter()
            outcome, data = client.post(path, body)
            tally.add(outcome, sent, len(data))
        client.close()

    started = time.perf_counter()
    _run_threads(worker, clients)
    wall = time.perf_counter() - started
    result = tally.summary(wall)
    result["clients"] = clients
    return result


def _run_threads(worker: Callable[[], None], n: int) -> None:
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def batches(port: int, path: str, bodies: list[bytes], size: int, args) -> tuple[dict, bytes]:
    """Sequential batch requests: stores/s over the 200s; the first answer's body."""
    client = _Client(port, args.request_timeout)
    client.post(path, bodies[-1])  # warm-up with the last batch (not counted)
    tally, first = _Tally(), b""
    started = time.perf_counter()
    for i, body in enumerate(bodies):
        sent = time.perf_counter()
        outcome, data = client.post(path, body)
        tally.add(outcome, sent, len(data))
        if i == 0:
            first = data
    wall = time.perf_counter() - started
    client.close()
    result = tally.summary(wall)
    ok_seconds = sum(tally.latencies_ms) / 1e3
    result.update(
        batch_size=size,
        stores_per_second=size * result["ok"] / ok_seconds if ok_seconds else 0.0,
    )
    return result, first


# --- one server, in-process ----------------------------------------------------------------


@dataclass
class Workload:
    """The requests of one run, encoded once for each server."""

    names: list[str]
    single_ids: list[str]
    single_records: list[dict]
    batch_ids: list[list[str]]
    batch_records: list[list[dict]]
    batch_frames: list[pd.DataFrame]


def measure_server(server: Server, path: str, single: list[bytes], batch: list[bytes], args):
    """Warm-up, open loop, saturation and batches on a started server."""
    client = _Client(server.port, args.request_timeout)
    started = time.perf_counter()
    warm = Counter([client.post(path, single[0])[0]])
    first_ms = (time.perf_counter() - started) * 1e3
    warm.update(client.post(path, single[i % len(single)])[0] for i in range(1, args.warmup))
    status, first_single = client.post(path, single[0])
    client.close()
    print(
        f"  {server.name}: ready in {server.startup_seconds:.1f} s; first request "
        f"{first_ms:.1f} ms; warm-up {dict(warm)}"
    )
    out = {
        "startup_seconds": server.startup_seconds,
        "first_request_ms": first_ms,
        "warmup": dict(warm),
        "server_rss_mib_after_warmup": _rss_mib(server.process.pid),
    }
    root = server.process.pid
    meter = _CpuMeter(root)
    out["open_loop"] = open_loop(server.port, path, single, args.rate, args.seconds, args)
    out["open_loop"].update(cores=meter.cores(), server_rss_mib=_rss_mib(root))
    _print_phase("open loop", out["open_loop"])
    meter = _CpuMeter(root)
    out["saturation"] = closed_loop(
        server.port, path, single, args.clients, args.saturation_seconds, args
    )
    out["saturation"].update(cores=meter.cores(), server_rss_mib=_rss_mib(root))
    _print_phase("saturation", out["saturation"])
    meter = _CpuMeter(root)
    out["batch"], first_batch = batches(server.port, path, batch, args.batch_size, args)
    out["batch"].update(cores=meter.cores(), server_rss_mib=_rss_mib(root))
    print(f"    batch: {out['batch']['stores_per_second']:,.0f} stores/s, "
          f"errors {out['batch']['errors']}; {_cores(out['batch'])}")  # fmt: skip
    return out, (status, first_single), first_batch


def _cores(r: dict) -> str:
    c = r["cores"]
    return (
        f"cores: server {c['server']:.2f}, client {c['client']:.2f}, "
        f"others {c['others']:.2f} (steal {c['steal']:.2f}); server RSS "
        f"{r['server_rss_mib']:,.0f} MiB"
    )


def _print_phase(name: str, r: dict) -> None:
    print(
        f"    {name}: {r['ok']} ok, errors {r['errors']}, unsent {r['unsent']}, "
        f"{r['ok_per_second']:.0f}/s, p50 {r.get('p50_ms', math.nan):.2f} ms, "
        f"p99 {r.get('p99_ms', math.nan):.2f} ms, max {r.get('max_ms', math.nan):.0f} ms; "
        f"{_cores(r)}"
    )
    slowest = r.get("slowest") or []
    print(f"      slowest (s into the phase, ms): {' '.join(f'{a}:{b}' for a, b in slowest)}")


def run_server(server: Server, env: dict, path: str, single, batch, args) -> dict:
    """Start, measure, stop one server; a failure is recorded, not raised."""
    try:
        server.start(env, args.startup_timeout)
        out, first_single, first_batch = measure_server(server, path, single, batch, args)
        out["first_single"], out["first_batch"] = first_single, first_batch
        return out
    except (RuntimeError, OSError) as exc:
        print(f"  {server.name}: FAILED {exc}")
        return {"failed": str(exc)}
    finally:
        server.stop()
        print(f"  {server.name}: stopped; log {server.log}")


def in_process(pyfunc, scorer, work: Workload, args) -> dict:
    """The same stores scored in this process: one store (score_records) and batches."""
    for r in work.single_records[: args.warmup]:
        scorer.score_records([r])
    times = []
    for r in work.single_records:
        started = time.perf_counter()
        scorer.score_records([r])
        times.append((time.perf_counter() - started) * 1e3)
    single = {
        "calls": len(times),
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
    }
    out = {"single_score_records": single}
    for name, call, inputs in (
        ("score_records", scorer.score_records, work.batch_records),
        ("pyfunc_predict", pyfunc.predict, work.batch_frames),
    ):
        call(inputs[-1])  # warm-up
        seconds = []
        for batch in inputs:
            started = time.perf_counter()
            call(batch)
            seconds.append(time.perf_counter() - started)
        out[name] = {
            "batches": len(seconds),
            "batch_size": args.batch_size,
            "stores_per_second": args.batch_size * len(seconds) / sum(seconds),
            "best_stores_per_second": args.batch_size / min(seconds),
        }
    return out


# --- checks and report ---------------------------------------------------------------------


def _answers(ours: dict, peer: dict, scorer, work: Workload) -> dict:
    """What each server returns for one store, and its scores' agreement with in-process."""
    expected = np.array([s["score"] for s in scorer.score_records(work.batch_records[0])])
    out: dict = {}
    for name, result in (("spotcheck", ours), ("mlflow", peer)):
        if "failed" in result:
            continue
        status, body = result.pop("first_single")
        batch_body = result.pop("first_batch")
        try:
            single = json.loads(body)
            rows = (single.get("stores") or single.get("predictions")) if status == "200" else None
            batch = json.loads(batch_body)
            batch_rows = batch.get("stores") or batch.get("predictions")
            scores = np.array([row["score"] for row in batch_rows])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            out[name] = {"status": status, "unparsed": f"{type(exc).__name__}: {exc}"}
            continue
        first = rows[0] if rows else {}
        reasons = first.get("reasons")
        if isinstance(reasons, str):  # MLflow's records: a list column comes as a JSON string
            reasons = json.loads(reasons)
        out[name] = {
            "status": status,
            "top_level_keys": sorted(single),
            "store_keys": sorted(first),
            "reasons_as": type(first.get("reasons")).__name__,
            "returns_reasons": bool(reasons),
            "example_reason": (reasons or [None])[0],
            "max_abs_score_diff_vs_in_process": float(np.max(np.abs(scores - expected))),
        }
    return out


def _fmt(result: dict, key: str) -> str:
    value = result.get(key)
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 1000 else f"{value:.2f}"


def report(results: dict) -> None:
    """Print the side-by-side table, the ratios and the targets."""
    rows = [("spotcheck /score (reasons)", results["spotcheck"])]
    rows.append(("mlflow models serve", results["mlflow"]))
    rate = results["args"]["rate"]
    blank = f"{'':>7s} {'':>7s} {'':>6s} {'':>4s} {'':>7s} {'':>7s} {'':>7s} {'':>4s}"
    print()
    print(f"{'':28s} {f'open loop, {rate:g} req/s':^27s} {'saturation':^28s} {'batch':^16s}")
    print(
        f"{'path':28s} {'p50':>7s} {'p99':>7s} {'ok/s':>6s} {'err':>4s} "
        f"{'ok/s':>7s} {'p50':>7s} {'p99':>7s} {'err':>4s} {'stores/s':>11s} {'err':>4s}"
    )
    notes = []
    for name, r in rows:
        if "failed" in r:
            print(f"{name:28s} failed: {r['failed'][:120]}")
            continue
        o, s, b = r["open_loop"], r["saturation"], r["batch"]
        errors = [sum(x["errors"].values()) + x["unsent"] for x in (o, s, b)]
        print(
            f"{name:28s} {_fmt(o, 'p50_ms'):>7s} {_fmt(o, 'p99_ms'):>7s} "
            f"{o['ok_per_second']:>6.0f} {errors[0]:>4d} {s['ok_per_second']:>7.0f} "
            f"{_fmt(s, 'p50_ms'):>7s} {_fmt(s, 'p99_ms'):>7s} {errors[1]:>4d} "
            f"{b['stores_per_second']:>11,.0f} {errors[2]:>4d}"
        )
        for phase, x in (("open loop", o), ("saturation", s), ("batch", b)):
            if x["errors"]:
                notes.append(f"{name}, {phase}: errors {x['errors']}")
        if o["unsent"]:
            notes.append(
                f"{name}: fell behind the timetable ({o['ok']} of {o['scheduled']} answered, "
                f"{o['unsent']} still unsent at the deadline); its open-loop percentiles count "
                f"their waits so far (lower bounds)"
            )
    local = results["in_process"]
    one = local["single_score_records"]
    print(
        f"{'in-process score_records':28s} {one['p50_ms']:>7.2f} {one['p99_ms']:>7.2f} "
        f"{blank[16:]} {local['score_records']['stores_per_second']:>11,.0f}"
    )
    print(f"{'in-process pyfunc predict':28s} {blank} "
          f"{local['pyfunc_predict']['stores_per_second']:>11,.0f}")  # fmt: skip
    print("(ms; open loop from the scheduled send time, saturation from the send; in-process:")
    print(" one store called back to back; err: non-200 answers, connection errors and unsent)")
    for note in notes:
        print(f"note: {note}")
    for key, target in results["targets"].items():
        verdict = {True: "met", False: "MISSED", None: ""}[target["met"]]
        value = target["value"]
        shown = "-" if value is None else f"{value:.3g}"
        print(f"{key}: {shown} (target {target['want']}) {verdict}")


def targets(results: dict) -> dict:
    """The issue's targets with the measured values and ratios."""
    ours, peer = results["spotcheck"], results["mlflow"]
    ceiling = results["in_process"]["score_records"]["stores_per_second"]

    def get(r: dict, *keys: str):
        for k in keys:
            if not isinstance(r, dict) or k not in r:
                return None
            r = r[k]
        return r

    def ratio(a, b):
        return None if a is None or not b else a / b

    p99 = get(ours, "open_loop", "p99_ms")
    values = {
        "p99_at_rate_ms": (p99, f"< {P99_TARGET_MS:g} ms", lambda v: v < P99_TARGET_MS),
        "p99_vs_peer_at_rate": (
            ratio(p99, get(peer, "open_loop", "p99_ms")),
            f"<= {PEER_RATIO_TARGET:g}x",
            lambda v: v <= PEER_RATIO_TARGET,
        ),
        "p99_vs_peer_at_saturation": (
            ratio(get(ours, "saturation", "p99_ms"), get(peer, "saturation", "p99_ms")),
            "(reported)",
            None,
        ),
        "batch_vs_in_process_ceiling": (
            ratio(get(ours, "batch", "stores_per_second"), ceiling),
            f">= {CEILING_SHARE_TARGET:g}",
            lambda v: v >= CEILING_SHARE_TARGET,
        ),
        "batch_vs_peer": (
            ratio(get(ours, "batch", "stores_per_second"), get(peer, "batch", "stores_per_second")),
            "(reported)",
            None,
        ),
    }
    return {
        k: {"value": v, "want": want, "met": None if v is None or check is None else check(v)}
        for k, (v, want, check) in values.items()
    }


# --- main ----------------------------------------------------------------------------------


def workload(table: pd.DataFrame, names: list[str], args) -> Workload:
    """Distinct real stores for single requests; other real stores for the batches."""
    shuffled = table.sample(frac=1.0, random_state=0).reset_index(drop=True)
    single = shuffled.head(args.stores)
    need = args.batches * args.batch_size
    rest = shuffled.iloc[len(single) :]
    if len(rest) < need:  # a small table: batches repeat its stores
        rest = pd.concat([shuffled] * -(-need // len(shuffled)), ignore_index=True)
    rest = rest.head(need).reset_index(drop=True)
    frames = [rest.iloc[i : i + args.batch_size] for i in range(0, need, args.batch_size)]
    return Workload(
        names=names,
        single_ids=single["store_id"].astype(str).tolist(),
        single_records=_records(single, names),
        batch_ids=[f["store_id"].astype(str).tolist() for f in frames],
        batch_records=[_records(f, names) for f in frames],
        batch_frames=[f[names].reset_index(drop=True) for f in frames],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models:/counterfeit-store-classifier@champion")
    parser.add_argument("--features", type=Path, required=True, help="a written feature table")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="open-loop duration")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients")
    parser.add_argument("--saturation-seconds", type=float, default=10.0)
    parser.add_argument("--stores", type=int, default=2000, help="distinct single stores")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10, help="batch requests per server")
    parser.add_argument("--in-flight", type=int, default=32, help="open-loop requests at most")
    parser.add_argument("--warmup", type=int, default=100, help="uncounted requests first")
    parser.add_argument("--drain", type=float, default=15.0, help="open-loop grace seconds")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--skip-peer", action="store_true", help="no mlflow models serve")
    parser.add_argument("--logs", type=Path, help="server logs directory [a temporary one]")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    import mlflow.pyfunc

    from features.scoring.model import scorer_of
    from features.tracking import connect

    connect()
    pyfunc = mlflow.pyfunc.load_model(args.model)
    scorer = scorer_of(pyfunc)
    names = list(scorer.spec.names)
    table = pd.read_parquet(args.features)
    work = workload(table, names, args)
    singles = zip(work.single_ids, work.single_records, strict=True)
    ours_single = [_ours_body([i], [r]) for i, r in singles]
    ours_batch = [_ours_body(i, r) for i, r in zip(work.batch_ids, work.batch_records, strict=True)]
    peer_single = [_peer_body(names, [r]) for r in work.single_records]
    peer_batch = [_peer_body(names, r) for r in work.batch_records]
    logs = args.logs or Path(tempfile.mkdtemp(prefix="bench_serving-"))
    logs.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    # The servers start helpers by name (mlflow runs `uvicorn`): this environment's first.
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"}
    print(
        f"{args.model}: {len(names)} features; {len(work.single_ids)} single stores, "
        f"{args.batches} batches of {args.batch_size}; {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}; logs in {logs}"
    )

    print("in-process (no server running)")
    local = in_process(pyfunc, scorer, work, args)
    print(f"  score_records: one store p50 {local['single_score_records']['p50_ms']:.2f} ms; "
          f"batch {local['score_records']['stores_per_second']:,.0f} stores/s; pyfunc predict "
          f"{local['pyfunc_predict']['stores_per_second']:,.0f} stores/s")  # fmt: skip

    port = _free_port()
    ours = Server(
        "spotcheck serve",
        [str(bin_dir / "spotcheck"), "serve", "--model", args.model, "--port", str(port),
         "--host", "127.0.0.1"],
        port, "/readyz", logs / "spotcheck.log",
    )  # fmt: skip
    results_ours = run_server(ours, env, "/score", ours_single, ours_batch, args)

    if args.skip_peer:
        results_peer: dict = {"failed": "skipped (--skip-peer)"}
    else:
        port = _free_port()
        peer = Server(
            "mlflow models serve",
            [str(bin_dir / "mlflow"), "models", "serve", "-m", args.model, "--env-manager",
             "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            port, "/ping", logs / "mlflow.log",
        )  # fmt: skip
        results_peer = run_server(peer, env, "/invocations", peer_single, peer_batch, args)

    results = {
        "model": args.model,
        "features_file": str(args.features),
        "features": len(names),
        "cpu_count": os.cpu_count(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "logs": str(logs),
        "answers": _answers(results_ours, results_peer, scorer, work),
        "spotcheck": results_ours,
        "mlflow": results_peer,
        "in_process": local,
        "load_average": os.getloadavg(),
    }
    results["targets"] = targets(results)
    for name, answer in results["answers"].items():
        print(f"{name} answers: {json.dumps(answer, default=str)[:400]}")
    report(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
