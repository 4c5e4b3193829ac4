"""The demo's last step: wait for the served model, then show one request and its answer.

Prints the equivalent ``curl`` command and the scored, explained answer (shortened to the
top reasons) for the first store of the spot-check queue.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from pathlib import Path

import pandas as pd


def _wait_ready(base: str, pid: int, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise SystemExit(f"the server stopped:\n{log.read_text()[-2000:]}") from None
        time.sleep(1)
    raise SystemExit(f"the server was not ready in {timeout:.0f} s:\n{log.read_text()[-2000:]}")


def main() -> int:
    """Wait for the server, send one request, print it and its answer."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--queue", type=Path, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    started = time.monotonic()
    _wait_ready(base, args.server_pid, args.log)
    print(f"ready in {time.monotonic() - started:.1f} s")
    store = str(pd.read_parquet(args.queue)["store_id"].iloc[0])
    body = json.dumps({"store_ids": [store]})
    print(f"curl -s -X POST {base}/score_stores -H 'content-type: application/json' -d '{body}'")
    request = urllib.request.Request(
        f"{base}/score_stores", data=body.encode(), headers={"content-type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    took = (time.perf_counter() - started) * 1000
    scored = answer["stores"][0]
    short = {
        "model": answer["model"],
        "store_id": scored["store_id"],
        "score": round(scored["score"], 4),
        "band": scored["band"],
        "reasons": [r["text"] for r in scored["reasons"][:3]],
        "mitigating": [r["text"] for r in scored["mitigating"][:2]],
    }
    print(json.dumps(short, indent=2))
    print(f"(answered in {took:.1f} ms; full answer: every reason with its value, genuine "
          "median, percentile and log-odds; POST /score takes features, /explain gives every "
          f"contribution, GET /model describes the model; API docs at {base}/)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
