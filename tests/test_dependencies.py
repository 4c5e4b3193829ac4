"""Declared dependencies cover what each package imports (lazy imports included).

``features`` needs only the base dependencies (a registered model and the feature build run
on them; its Spark engine the spark extra), ``training`` adds its extra, ``serving`` its own,
``loop`` both; nothing relies on a library that happens to be installed for another reason.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"features", "training", "serving", "loop", "spotcheck"}


def _names(requirements: list[str]) -> set[str]:
    """Normalised distribution names of requirement strings."""
    return {
        re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def _third_party_imports(package: str) -> dict[tuple[str, ...], set[str]]:
    """Distributions providing a module (any one will do) -> files of ``package`` importing it."""
    distributions = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in PROJECT or top == "__future__":
                    continue
                providers = tuple(
                    sorted({d.lower().replace("_", "-") for d in distributions.get(top, [top])})
                )
                found.setdefault(providers, set()).add(str(path.relative_to(ROOT)))
    return found


def test_each_package_imports_only_what_it_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _names(project["dependencies"])
    extras = {name: _names(reqs) for name, reqs in project["optional-dependencies"].items()}
    allowed = {
        # pyspark (the spark extra), lazily: the Spark session, the Spark feature engine
        # (features.store.spark_engine, features.links.spark) and Spark scoring.
        "features": base | extras["spark"],
        "spotcheck": base,
        "serving": base | extras["serving"] | extras["spark"],
        "training": base | extras["training"],
        # The backtest trains and queues: it needs both extras.
        "loop": base | extras["training"] | extras["serving"],
    }
    undeclared = {
        package: {providers: sorted(files)
                  for providers, files in _third_party_imports(package).items()
                  if not declared & set(providers)}
        for package, declared in allowed.items()
    }  # fmt: skip
    assert undeclared == {package: {} for package in allowed}


def test_benchmark_only_libraries_stay_out_of_the_default_install():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = _names(pyproject["project"]["dependencies"])
    for extra in pyproject["project"]["optional-dependencies"].values():
        installed |= _names(extra)
    installed |= _names(pyproject["dependency-groups"]["dev"])
    assert "xgboost" not in installed
    assert "xgboost" in _names(pyproject["dependency-groups"]["bench"])
