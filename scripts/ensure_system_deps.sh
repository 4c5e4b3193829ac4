#!/usr/bin/env bash
# Make sure the system packages of the scale-out tests are installed: a Java 17 runtime for
# Spark (Debian's `openjdk-17-jre-headless`) and PostgreSQL 15's server binaries for the
# throwaway database of tests/postgres_server.py (Debian's `postgresql-15`).
# Idempotent: does nothing (and touches no network) when both are already there.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin

java_17() {
    # Debian's JDK 17 wherever PATH's java points: features/spark_session.py sets JAVA_HOME
    # to it, so a newer default Java does not matter.
    compgen -G "/usr/lib/jvm/java-17-openjdk-*/bin/java" >/dev/null
}

postgres_15() {
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ]
}

missing=()
java_17 || missing+=(openjdk-17-jre-headless)
postgres_15 || missing+=(postgresql-15)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

fail() {
    echo "ensure_system_deps: $*" >&2
    echo "ensure_system_deps: install Debian's ${missing[*]} (apt-get install ${missing[*]}):" \
        "Spark (the spark extra) needs Java 17, the PostgreSQL tests PostgreSQL 15 in $PG_BIN." >&2
    exit 1
}

[ "$EUID" -eq 0 ] || fail "missing ${missing[*]}; installing needs root"
command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and no apt-get to install them"

echo "ensure_system_deps: installing ${missing[*]} (one-off)..." >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    fail "apt-get update failed"
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    fail "apt-get install ${missing[*]} failed"
fi
java_17 || fail "openjdk-17-jre-headless installed no /usr/lib/jvm/java-17-openjdk-*/bin/java"
postgres_15 || fail "postgresql-15 installed no initdb/pg_ctl/postgres in $PG_BIN"
echo "ensure_system_deps: $(ls -d /usr/lib/jvm/java-17-openjdk-*); $("$PG_BIN/postgres" --version)" >&2
