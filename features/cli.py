"""typer commands of the features package: ``validate``, ``synth`` and ``features``.

Heavy modules are imported inside the commands so that ``spotcheck --help`` stays instant.
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)
