"""The ``spotcheck`` command: a thin composition of each package's own typer commands."""

from __future__ import annotations

import typer

from features.cli import app as features_app
from loop.cli import app as loop_app
from serving.cli import app as serving_app
from serving.cli import bento_app
from training.cli import app as training_app

app = typer.Typer(
    name="spotcheck",
    help="Find online stores that sell counterfeits and decide which to test-buy.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Find online stores that sell counterfeits and decide which to test-buy."""
    # A callback keeps `spotcheck COMMAND` a group even while only one command is registered.


for sub_app in (features_app, training_app, serving_app, loop_app):
    app.registered_commands.extend(sub_app.registered_commands)
app.add_typer(bento_app, name="bento")


if __name__ == "__main__":
    app()
