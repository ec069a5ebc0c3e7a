"""Migrations parse into statements, carry checksums, and grants follow DESIGN.md per relay mode."""

from __future__ import annotations

import pytest

from schema.mysql import Migration, app_grants, load_migrations, relay_grants
from schema.settings import SettingsError


def test_migrations_are_numbered_and_ordered() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrations[0].version == "0001"


def test_core_migration_creates_every_table() -> None:
    sql = load_migrations()[0].sql
    for table in (
        "teams",
        "users",
        "company_profiles",
        "company_cidb_gradings",
        "tenders",
        "integration_outbox",
    ):
        assert f"CREATE TABLE {table} (" in sql


def test_outbox_has_seed_columns_and_relay_columns() -> None:
    stmt = next(s for s in load_migrations()[0].statements() if "integration_outbox" in s)
    for column in (
        "id ",
        "event_type",
        "payload",
        "published ",
        "created_at",
        "published_at",
        "aggregate_type",
        "aggregate_id",
        "schema_version",
    ):
        assert column in stmt
    assert "created_at      TIMESTAMP(3)" in stmt
    assert "KEY idx_outbox_published_created (published, created_at)" in stmt


def test_statement_split_ignores_comments() -> None:
    m = Migration("0099", "x", "-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n\nCREATE TABLE b (y INT);\n")
    assert m.statements() == ["CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)"]


def test_checksum_changes_with_content() -> None:
    assert Migration("1", "a", "x").checksum != Migration("1", "a", "y").checksum


def test_binlog_mode_grants_replication_and_outbox_rights_on_mariadb() -> None:
    grants = relay_grants("binlog", "tenderhub", mariadb=True)
    assert grants[0] == "REPLICATION SLAVE, BINLOG MONITOR ON *.*"
    assert "SELECT, DELETE, UPDATE (published, published_at) ON `tenderhub`.`integration_outbox`" in grants


def test_binlog_mode_uses_replication_client_on_mysql() -> None:
    assert (
        relay_grants("binlog", "tenderhub", mariadb=False)[0] == "REPLICATION SLAVE, REPLICATION CLIENT, RELOAD ON *.*"
    )


def test_polling_mode_has_no_replication_rights() -> None:
    grants = relay_grants("polling", "tenderhub", mariadb=True)
    assert not any("REPLICATION" in g or "BINLOG" in g for g in grants)


def test_app_may_only_append_to_outbox() -> None:
    outbox = [g for g in app_grants("tenderhub") if "integration_outbox" in g]
    # Column-level: the app cannot set id, created_at, published or published_at.
    assert outbox == [
        "INSERT (event_type, aggregate_type, aggregate_id, schema_version, payload) ON `tenderhub`.`integration_outbox`"
    ]


def test_identifiers_are_validated() -> None:
    with pytest.raises(SettingsError):
        relay_grants("binlog", "tender`; DROP DATABASE x; --", mariadb=True)
