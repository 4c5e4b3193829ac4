"""The benchmarks measure what they claim: their own self-checks, run as commands.

Nothing may import ``experiments/``, so each benchmark's check runs in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_feature_benchmark_pandas_baseline_agrees_with_the_duckdb_subset(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.bench_features", "--self-check",
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-check passed" in result.stdout
    assert result.stdout.count("largest relative difference") == 2
