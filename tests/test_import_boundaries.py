"""The import rules, proven in fresh interpreters so modules other tests imported hide nothing.

* ``features.scoring`` imports nothing of the project but ``features.spec``; loading and
  scoring a model needs LightGBM, MLflow, numpy and pandas only.
* ``training`` and ``serving`` never import each other; ``features`` imports neither;
  ``loop`` (the backtest) imports all three and nothing imports it.
* ``features.synth`` imports only ``features.contract`` (and ``features.spec``).
* A registered model ships only ``features/spec.py`` and ``features/scoring`` as code, and
  loads and scores with every other part of ``features`` blocked.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("features", "training", "serving", "loop", "spotcheck")
HEAVY = ("optuna", "sklearn", "shap", "duckdb")


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _loaded_after(imports: str) -> dict[str, list[str]]:
    """Project modules and heavy libraries loaded by ``imports`` in a fresh interpreter."""
    out = _run(
        f"""
        import json, sys
        {imports}
        names = sorted(sys.modules)
        print(json.dumps({{
            "project": [n for n in names if n.split(".")[0] in {PROJECT!r}],
            "heavy": [n for n in {HEAVY + ("training", "lightgbm")!r} if n in sys.modules],
        }}))
        """
    )
    return json.loads(out)


def test_scoring_imports_nothing_of_the_project_but_the_spec():
    loaded = _loaded_after(
        "import features.scoring.model, features.scoring.encoding, features.scoring.reasons"
    )
    assert set(loaded["project"]) == {
        "features",
        "features.spec",
        "features.scoring",
        "features.scoring.calibrator",
        "features.scoring.encoding",
        "features.scoring.model",
        "features.scoring.reasons",
        "features.scoring.reference",
    }
    assert loaded["heavy"] == []  # LightGBM too is imported only when a model loads


def test_synth_imports_only_the_contract_and_the_spec():
    loaded = _loaded_after("import features.synth.generate")
    outside = [
        name
        for name in loaded["project"]
        if name not in ("features", "features.spec")
        and not name.startswith(("features.synth", "features.contract"))
    ]
    assert outside == []


def test_serving_needs_no_training_optuna_scikit_learn_or_shap():
    loaded = _loaded_after("import serving.batch, serving.cli")
    assert not [n for n in loaded["project"] if n.startswith("training")]
    assert not set(loaded["heavy"]) & {"optuna", "sklearn", "shap", "training"}


def _imported_modules(path: Path) -> list[str]:
    """Absolute module names ``path`` imports (anywhere in the file, lazy imports included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def test_package_import_rules_hold_in_every_file_including_lazy_imports():
    forbidden = {
        "features": {"training", "serving", "loop", "spotcheck"},
        "training": {"serving", "loop", "spotcheck"},
        "serving": {"training", "loop", "spotcheck"},
        "loop": {"spotcheck"},
    }
    broken = []
    for package, banned in forbidden.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = [n for n in _imported_modules(path) if n.split(".")[0] in banned]
            broken += [f"{path.relative_to(ROOT)} imports {n}" for n in bad]
    allowed_in = {
        "features/scoring": ("features.spec", "features.scoring"),
        "features/synth": ("features.spec", "features.contract", "features.synth"),
    }
    for folder, allowed in allowed_in.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            own = [n for n in _imported_modules(path) if n.split(".")[0] == "features"]
            bad = [n for n in own if n != "features" and not n.startswith(allowed)]
            broken += [f"{path.relative_to(ROOT)} imports {n}" for n in bad]
    assert broken == []


def test_a_saved_model_loads_and_scores_with_the_rest_of_features_blocked(tiny_scorer, save_scorer):
    """Only spec.py and scoring/ (copied into the model) are needed, and no heavy library."""
    scorer, frame = tiny_scorer
    path = save_scorer(scorer, frame)
    rows = frame.head(3).to_dict(orient="list")
    out = _run(
        f"""
        import json, sys

        ALLOWED = ("features", "features.spec", "features.scoring")

        class Block:
            def find_spec(self, name, path=None, target=None):
                top = name.split(".")[0]
                blocked = top in {HEAVY + ("training", "serving")!r} or (
                    top == "features" and not name.startswith(ALLOWED)
                )
                if blocked:
                    raise ImportError(f"{{name}} is blocked")

        sys.meta_path.insert(0, Block())
        import mlflow.pyfunc
        import pandas as pd

        model = mlflow.pyfunc.load_model({str(path)!r})
        scored = model.predict(pd.DataFrame({rows!r}))
        import features.scoring.model as shipped
        print(json.dumps({{
            "scores": scored["score"].round(6).tolist(),
            "module": shipped.__file__,
            "loaded": sorted(n for n in sys.modules if n.startswith("features")),
        }}))
        """
    )
    result = json.loads(out)
    expected = scorer.score_frame(frame.head(3))["score"].round(6).tolist()
    assert result["scores"] == expected
    assert result["module"].startswith(str(path / "code" / "features"))
    assert all(n.startswith(("features.spec", "features.scoring")) or n == "features"
               for n in result["loaded"])  # fmt: skip
