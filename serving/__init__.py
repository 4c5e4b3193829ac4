"""Inference: load a registered model, score and rank stores, and (later) serve them online.

``batch`` scores a feature table or a histories directory with any ``models:/`` or
``runs:/`` URI and ranks the stores into a spot-check queue; ``cli`` holds the commands.
It imports ``features`` and never ``training``: the model carries its own scoring code.
"""


class ServingError(Exception):
    """Base of every error the ``serving`` package raises (e.g. a model that does not load)."""
