"""The throwaway PostgreSQL test server: starts, keeps databases apart, stops without a trace."""

from __future__ import annotations

import socket

import postgres_server
import psycopg2
import pytest


def _query(server: postgres_server.PostgresServer, database: str, sql: str):
    connection = psycopg2.connect(host="127.0.0.1", port=server.port, user="postgres",
                                  dbname=database)  # fmt: skip
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else None
    finally:
        connection.close()


def test_session_server_is_postgres_15_with_separate_databases(postgres):
    first, second = postgres.create_database("same"), postgres.create_database("same")
    assert first != second
    version = _query(postgres, first, "SHOW server_version")[0][0]
    assert version.startswith("15.")
    _query(postgres, first, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    assert _query(postgres, first, "SELECT x FROM t") == [(1,)]
    with pytest.raises(psycopg2.errors.UndefinedTable):
        _query(postgres, second, "SELECT x FROM t")


def test_a_server_stops_and_leaves_nothing_behind():
    server = postgres_server.start()
    try:
        assert _query(server, "postgres", "SELECT 1") == [(1,)]
    finally:
        server.stop()
    assert not server.root.exists()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", server.port))


def test_missing_binaries_are_an_error_that_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(postgres_server, "DEBIAN_BIN", tmp_path / "nowhere")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(postgres_server.PostgresUnavailable, match="postgresql-15"):
        postgres_server.start()
