"""Writing tables atomically: a crash or a bad input never leaves a half-written file.

Every output of the project (feature tables and their specs, scored stores) goes through
``write_table``: the files are written to temporary names in the target directory and
renamed into place only once all of them are complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from features import FeaturesError

TABLE_SUFFIXES = (".parquet", ".csv")


class OutputError(FeaturesError):
    """An output path cannot be written (unknown extension, not a file)."""


def check_table_path(path: str | Path, what: str = "output") -> Path:
    """The path as a ``Path`` if it names a ``.parquet`` or ``.csv`` file.

    Raises:
        OutputError: Another extension, or an existing directory.
    """
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise OutputError(f"{what} {str(path)!r}: use a .parquet or .csv file name")
    if path.is_dir():
        raise OutputError(f"{what} {str(path)!r} is a directory")
    return path


def write_table(
    frame: pd.DataFrame, path: str | Path, sidecars: dict[Path, str] | None = None
) -> Path:
    """Write ``frame`` as Parquet or CSV (by extension), and text sidecar files, atomically.

    Args:
        frame: The table; its index is not written.
        path: Output path ending in ``.parquet`` or ``.csv``.
        sidecars: Text files written with the table (e.g. its FeatureSpec), path -> text.

    Returns:
        The table's path.

    Raises:
        OutputError: The path does not end in ``.parquet`` or ``.csv``.
    """
    path = check_table_path(path)
    files = {path: frame, **(sidecars or {})}
    temporary: dict[Path, Path] = {}
    try:
        for target, content in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            temporary[target] = Path(name)
            _write(content, target.suffix.lower(), temporary[target])
        for target, tmp in temporary.items():
            os.replace(tmp, target)
    finally:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
    return path


def _write(content: pd.DataFrame | str, suffix: str, tmp: Path) -> None:
    """Write one file's content to its temporary path."""
    if isinstance(content, str):
        tmp.write_text(content)
    elif suffix == ".parquet":
        content.to_parquet(tmp, index=False)
    else:
        content.to_csv(tmp, index=False)
