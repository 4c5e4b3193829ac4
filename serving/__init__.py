"""Inference: load a registered model, score and rank stores, and serve them online.

``batch`` scores a feature table or a histories directory with any ``models:/`` or
``runs:/`` URI and ranks the stores into a spot-check queue; ``queue`` and ``report`` make
the test-buy queue and the reviewers' case reports; ``online`` (request checks, the served
model, the feature snapshot, the work limit), ``service`` (the BentoML service), ``follow``
(switching to a newly promoted version), ``bento`` (model store import, server command) and
``metrics`` serve it over HTTP; ``cli`` holds the commands.
It imports ``features`` and never ``training``: the model carries its own scoring code.
"""


class ServingError(Exception):
    """Base of every error the ``serving`` package raises (e.g. a model that does not load)."""
