"""The validation report as people read it: a summary table, or every violation by table."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from features.contract.validation import SUMMARY_TIME_COLUMNS, HistoriesSummary, ValidationReport

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table as RichTable


def print_report(report: ValidationReport, console: Console | None = None) -> None:
    """Print a short summary of a valid report, or its violations grouped by table.

    Args:
        report: The validation report.
        console: Where to print; a new rich console on stdout (errors on stderr) if None.
    """
    from rich.console import Console

    if not report.ok:
        console = console or Console(stderr=True)
        n = len(report.violations)
        console.print(
            f"{n} contract violation{'s' if n != 1 else ''} in {report.directory}",
            style="bold red",
            markup=False,
            highlight=False,
        )
        for table, violations in report.by_table().items():
            console.print(f"{table}:", style="bold", markup=False, highlight=False)
            for violation in violations:
                # soft_wrap: one violation per line, whatever the terminal width.
                console.print(
                    f"  {violation.message}", markup=False, highlight=False, soft_wrap=True
                )
        return
    console = console or Console()
    console.print(_summary_table(report.summary))
    summary = report.summary
    span = summary.time_range
    if span is not None:
        console.print(f"time range: {_fmt_time(span[0])} to {_fmt_time(span[1])} UTC")
    by_class = ", ".join(f"is_counterfeit={k}: {v:,}" for k, v in summary.labels_by_class.items())
    by_source = ", ".join(f"{k}: {v:,}" for k, v in summary.labels_by_source.items())
    console.print(
        f"stores: {summary.n_stores:,} ({summary.n_labeled_stores:,} labeled); "
        f"labels: {by_class or 'none'}; by source: {by_source or 'none'}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"OK: {report.directory} satisfies the contract", style="green", markup=False)


def _summary_table(summary: HistoriesSummary) -> RichTable:
    from rich.table import Table as RichTable

    table = RichTable(title="store histories")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("time column")
    table.add_column("first (UTC)")
    table.add_column("last (UTC)")
    for name, n in summary.rows.items():
        span = summary.time_ranges.get(name)
        first, last = (_fmt_time(span[0]), _fmt_time(span[1])) if span else ("-", "-")
        table.add_row(name, f"{n:,}", SUMMARY_TIME_COLUMNS.get(name, "-"), first, last)
    return table


def _fmt_time(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}"
