"""The import rule: serving and the model contract never pull in training's dependencies.

``training`` and ``serving`` never import each other; what they share lives in ``features``
or travels inside the MLflow model. Each check runs in a fresh interpreter so modules other
tests imported cannot hide a violation.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_serving_and_model_contract_do_not_import_training_optuna_or_sklearn():
    loaded = _run(
        """
        import sys
        import serving
        import features.model_contract
        print(",".join(m for m in ("training", "optuna", "sklearn", "serving") if m in sys.modules))
        """
    )
    assert loaded == "serving"


def test_a_saved_scorer_loads_and_predicts_with_scikit_learn_blocked(tmp_path):
    """Scoring works where scikit-learn is absent: LightGBM falls back, nothing else needs it."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from features.model_contract import category_levels, encode_features, write_artifacts
    from features.spec import Feature, FeatureSpec

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "kind": rng.choice(["a", "b"], 200)})
    y = (frame["x"] > 0).astype(int)
    spec = FeatureSpec(
        (Feature("x", "custom", "float", "x"), Feature("kind", "custom", "category", "kind"))
    )
    levels = category_levels(frame, spec)
    booster = lgb.train({"verbosity": -1}, lgb.Dataset(encode_features(frame, spec, levels), y), 10)
    artifacts = write_artifacts(
        tmp_path, booster, {"method": "sigmoid", "a": 1, "b": 0}, spec, levels
    )
    out = _run(
        f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("sklearn", "optuna", "training"):
                    raise ImportError(f"{{name}} is blocked")

        sys.meta_path.insert(0, Block())
        from types import SimpleNamespace
        import pandas as pd
        from features.model_contract import CounterfeitScorer

        scorer = CounterfeitScorer()
        scorer.load_context(SimpleNamespace(artifacts={artifacts!r}))
        scored = scorer.predict(None, pd.DataFrame({{"x": [2.0, -2.0], "kind": ["a", "b"]}}))
        print(scored["score"].round(6).tolist(), scored["reason_1"].tolist()[0])
        """
    )
    scores, reason = out.split("] ")
    high, low = map(float, scores.strip("[").split(", "))
    assert high > low
    assert reason.startswith("x is 2")


def test_training_and_serving_never_import_each_other():
    for package, forbidden in (("training", "serving"), ("serving", "training")):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                bad = [n for n in names if n.split(".")[0] == forbidden]
                assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
