"""Everything about data and the model's inputs.

Subpackages: ``contract`` (the store-history tables, their DuckDB views and validation),
``store`` (point-in-time store features), ``links`` (the link graph and its features),
``synth`` (the synthetic marketplace) and ``scoring`` (the model that travels inside
MLflow). Modules: ``spec`` (the FeatureSpec), ``settings``, ``io``, ``build`` (features for
given (store, as-of) keys), ``byo`` (a team's own features, labels and links) and ``cli``.
``features`` imports nothing else of the project.
"""

# A registered model carries only spec.py and scoring/ of this package (see
# features.scoring.model.code_paths). Where MLflow puts that copy first on sys.path, the rest
# of an installed spotcheck must still be found beside it.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)


class FeaturesError(Exception):
    """Base of every error the ``features`` package raises for unusable input.

    The subpackages raise their own subclasses, which say where the problem is (histories,
    contract, links, scoring, a team's own files, settings); callers that only need "bad
    input" catch this one.
    """
