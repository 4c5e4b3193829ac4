#!/usr/bin/env bash
# The main job end to end on embedded defaults; `make demo` runs it after bootstrapping.
# Everything lands in $DEMO_DIR: the synthetic marketplace, the feature table, the local
# SQLite MLflow store (tracking + registry), the Optuna study and the scored spot-check queue.
set -euo pipefail

DEMO_DIR=${DEMO_DIR:-demo}
DEMO_STORES=${DEMO_STORES:-60000}
DEMO_SEED=${DEMO_SEED:-7}
DEMO_TRIALS=${DEMO_TRIALS:-20}
PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# --project: the demo runs inside $DEMO_DIR, outside the project tree.
RUN="${RUN:-uv run --frozen --all-extras} --project $PROJECT_DIR"
MODEL_NAME=${MODEL_NAME:-counterfeit-store-classifier}

mkdir -p "$DEMO_DIR"
cd "$DEMO_DIR"
# Defaults are relative to the working directory: mlflow.db, mlruns/ and optuna.db live here.
unset MLFLOW_TRACKING_URI

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/7 Generate a synthetic marketplace ($DEMO_STORES stores, seed $DEMO_SEED)"
$RUN spotcheck synth --stores "$DEMO_STORES" --seed "$DEMO_SEED" --out histories --force

step "2/7 Validate it against the store-history contract"
$RUN spotcheck validate histories

step "3/7 Build point-in-time store features as of the end of the histories"
$RUN spotcheck features --histories histories --out features.parquet

step "4/7 Tune ($DEMO_TRIALS Optuna trials, cross-validated), train, calibrate and register a challenger"
# --truth: the synthetic marketplace knows every store's truth; it is used to report the
# model against all stores not labelled before the test period, never to fit or gate it.
$RUN spotcheck train --histories histories --trials "$DEMO_TRIALS" --seed "$DEMO_SEED" \
    --model-name "$MODEL_NAME" --truth histories/truth.parquet

step "5/7 Gated promotion: challenger -> champion"
status=0
$RUN spotcheck promote --model-name "$MODEL_NAME" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then exit "$status"; fi
ALIAS=champion
if [ "$status" -eq 3 ]; then
    # The gates kept the challenger out (e.g. a holdout too small to show it non-inferior):
    # nothing is promoted, and the queue below is the challenger's, for inspection only.
    printf 'No champion: the gates rejected the challenger; scoring it for inspection only.\n'
    ALIAS=challenger
fi

step "6/7 Score every store with the $ALIAS, each score with its reasons both ways"
$RUN spotcheck score --histories histories --model "models:/$MODEL_NAME@$ALIAS" \
    --out scores.parquet --top 5

step "7/7 The spot-check queue: 50 test-buys, one per ring, 10% drawn at random; case reports of the top 5"
$RUN spotcheck queue --histories histories --model "models:/$MODEL_NAME@$ALIAS" \
    --budget 50 --explore 0.1 --seed "$DEMO_SEED" --out queue --reports 5

printf '\nOutputs in %s/: histories/, features.parquet, scores.parquet, queue/ (queue.parquet, rings.parquet, queue.html, reports/ of the top 5 picks), mlflow.db, mlruns/\n' "$PWD"
printf 'Browse runs and the registry: cd %s && %s mlflow ui --backend-store-uri sqlite:///mlflow.db\n' "$PWD" "$RUN"
