"""The pipeline's Kafka ACLs, derived from the settings' names: each principal gets exactly its resources."""

from __future__ import annotations

from tenderhub.kafka_acls import kafka_acls_arguments, pipeline_acls, relay_transactional_id
from tests.unit.offline import offline_settings

SETTINGS = offline_settings(topic_prefix="prod.", relay_source_name="main", worker_group="tenderhub-workers")


def _grants(principal: str) -> dict[tuple[str, str, str], set[str]]:
    out: dict[tuple[str, str, str], set[str]] = {}
    for acl in pipeline_acls(SETTINGS, "relay", "worker"):
        if acl.principal == principal:
            out.setdefault((acl.resource_type, acl.resource, acl.pattern), set()).update(acl.operations)
    return out


def test_the_relay_writes_its_topics_under_its_transactional_id_and_reads_nothing_else() -> None:
    grants = _grants("User:relay")
    data = {("topic", f"prod.{t}", "literal") for t in ("activity", "company", "system", "tender")}
    assert set(grants) == data | {
        ("topic", "prod.relay.position", "literal"),
        ("topic", "prod.dlq", "literal"),
        ("transactional-id", "tenderhub-relay-main", "literal"),
    }
    assert all(grants[key] == {"Write", "Read", "Describe"} for key in data)
    assert grants[("topic", "prod.dlq", "literal")] == {"Write", "Describe"}
    assert relay_transactional_id(SETTINGS) == "tenderhub-relay-main"
    assert not any(kind == "group" for kind, _, _ in grants)


def test_the_workers_read_data_in_their_group_and_write_only_dead_letters() -> None:
    grants = _grants("User:worker")
    for topic in ("activity", "company", "system", "tender"):
        assert grants[("topic", f"prod.{topic}", "literal")] == {"Read", "Describe"}
    assert grants[("topic", "prod.dlq", "literal")] == {"Write", "Describe"}
    assert grants[("group", "tenderhub-workers", "literal")] == {"Read", "Describe"}
    assert grants[("group", "tenderhub-workers-control", "literal")] == {"Read", "Describe"}
    assert grants[("topic", "tenderhub-workers-control-", "prefixed")] == {"Create", "Read", "Write", "Describe"}
    assert ("topic", "prod.relay.position", "literal") not in grants
    assert not any(kind == "transactional-id" for kind, _, _ in grants)
    principals = {acl.principal for acl in pipeline_acls(SETTINGS, "relay", "worker")}
    assert principals == {"User:relay", "User:worker"}  # the read service has none


def test_rendered_as_kafka_acls_arguments() -> None:
    acl = next(a for a in pipeline_acls(SETTINGS, "relay", "worker") if a.resource_type == "transactional-id")
    assert kafka_acls_arguments(acl) == [
        "--add", "--allow-principal", "User:relay", "--transactional-id", "tenderhub-relay-main",
        "--resource-pattern-type", "literal", "--operation", "Write", "--operation", "Describe",
    ]  # fmt: skip
