#!/usr/bin/env bash
# The main job end to end on embedded defaults; `make demo` runs it after bootstrapping.
# Everything lands in $DEMO_DIR: the synthetic marketplace, the feature table, the local
# SQLite MLflow store (tracking + registry), the Optuna study, the scored spot-check queue and
# its case reports; it ends by serving the model over HTTP and showing one scored request.
set -euo pipefail

DEMO_DIR=${DEMO_DIR:-demo}
DEMO_STORES=${DEMO_STORES:-60000}
DEMO_SEED=${DEMO_SEED:-7}
DEMO_TRIALS=${DEMO_TRIALS:-20}
DEMO_PORT=${DEMO_PORT:-3000}
DEMO_BACKTEST_MONTHS=${DEMO_BACKTEST_MONTHS:-3}
DEMO_BACKTEST_BUDGET=${DEMO_BACKTEST_BUDGET:-30}
PROJECT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# --project: the demo runs inside $DEMO_DIR, outside the project tree.
RUN="${RUN:-uv run --frozen --all-extras} --project $PROJECT_DIR"
MODEL_NAME=${MODEL_NAME:-counterfeit-store-classifier}

mkdir -p "$DEMO_DIR"
cd "$DEMO_DIR"
# Defaults are relative to the working directory: mlflow.db, mlruns/ and optuna.db live here.
unset MLFLOW_TRACKING_URI

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/9 Generate a synthetic marketplace ($DEMO_STORES stores, seed $DEMO_SEED)"
$RUN spotcheck synth --stores "$DEMO_STORES" --seed "$DEMO_SEED" --out histories --force

step "2/9 Validate it against the store-history contract"
$RUN spotcheck validate histories

step "3/9 Build point-in-time store features as of the end of the histories"
$RUN spotcheck features --histories histories --out features.parquet

step "4/9 Tune ($DEMO_TRIALS Optuna trials, cross-validated), train, calibrate and register a challenger"
# --truth: the synthetic marketplace knows every store's truth; it is used to report the
# model against all stores not labelled before the test period, never to fit or gate it.
$RUN spotcheck train --histories histories --trials "$DEMO_TRIALS" --seed "$DEMO_SEED" \
    --model-name "$MODEL_NAME" --truth histories/truth.parquet

step "5/9 Gated promotion: challenger -> champion"
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

step "6/9 Score every store with the $ALIAS, each score with its reasons both ways"
$RUN spotcheck score --histories histories --model "models:/$MODEL_NAME@$ALIAS" \
    --out scores.parquet --top 5

step "7/9 The spot-check queue: 50 test-buys, one per ring, 10% drawn at random; case reports of the top 5"
$RUN spotcheck queue --histories histories --model "models:/$MODEL_NAME@$ALIAS" \
    --budget 50 --explore 0.1 --seed "$DEMO_SEED" --out queue --reports 5

step "8/9 Backtest the spot-check loop: $DEMO_BACKTEST_MONTHS months, $DEMO_BACKTEST_BUDGET test-buys a month per policy, the model retrained monthly"
# Its own registered model name: the backtest never touches the demo's champion.
$RUN spotcheck backtest --histories histories --truth histories/truth.parquet \
    --months "$DEMO_BACKTEST_MONTHS" --budget "$DEMO_BACKTEST_BUDGET" --trials 0 \
    --seed "$DEMO_SEED" --out backtest

step "9/9 Serve the $ALIAS over HTTP (BentoML's server on 127.0.0.1:$DEMO_PORT) and score the queue's first store"
# BentoML's model store lives in the demo directory too.
export BENTOML_HOME="$PWD/bentoml"
setsid $RUN spotcheck serve --model "models:/$MODEL_NAME@$ALIAS" --port "$DEMO_PORT" \
    --snapshot features.parquet > serve.log 2>&1 &
SERVER=$!
trap 'kill -TERM -- -"$SERVER" 2>/dev/null || true' EXIT
$RUN python "$PROJECT_DIR/scripts/demo_request.py" --port "$DEMO_PORT" --queue queue/queue.parquet \
    --server-pid "$SERVER" --log serve.log
kill -TERM -- -"$SERVER" 2>/dev/null || true
wait "$SERVER" 2>/dev/null || true
trap - EXIT
printf 'Stopped the server. Serve it again: cd %s && BENTOML_HOME=$PWD/bentoml %s spotcheck serve --model models:/%s@%s --snapshot features.parquet\n' "$PWD" "$RUN" "$MODEL_NAME" "$ALIAS"

printf '\nOutputs in %s/: histories/, features.parquet, scores.parquet, queue/ (queue.parquet, rings.parquet, queue.html, reports/ of the top 5 picks), backtest/ (backtest.html with its chart, months.parquet, picks.parquet), mlflow.db, mlruns/, bentoml/ (the served model), serve.log\n' "$PWD"
printf 'Browse runs and the registry: cd %s && %s mlflow ui --backend-store-uri sqlite:///mlflow.db\n' "$PWD" "$RUN"
