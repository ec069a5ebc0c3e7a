"""Who may do what on Kafka: the ACLs of the pipeline's principals, derived from the settings' topic names.

- the relay writes only the data topics, its position topic and its own dead letters (and reads the first two back:
  its position on start, the tail of the data topics when it recovers), under its own transactional id;
- the workers read the data topics (their consumer group), write the dead-letter topic, and keep Faust's own leader
  topic under their control group;
- the read service has no Kafka principal at all (it reads no Kafka).

`kafka_acls_arguments` renders them as arguments of Kafka's own ACL tool (`kafka-acls.sh`, or its class
org.apache.kafka.tools.AclCommand), which the production init job runs and the TLS stack's test applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from schema.kafka_client import KafkaConnection, kafka_options
from schema.settings import Settings
from schema.topics import TopicNames
from streams.consumer import control_group

ResourceType = Literal["topic", "group", "transactional-id"]


@dataclass(frozen=True)
class KafkaAcl:
    principal: str  # "User:<name>"
    resource_type: ResourceType
    resource: str
    pattern: Literal["literal", "prefixed"]
    operations: tuple[str, ...]


def relay_transactional_id(settings: Settings) -> str:
    return f"tenderhub-relay-{settings.relay_source_name}"


def pipeline_acls(settings: Settings, relay_user: str, worker_user: str) -> list[KafkaAcl]:
    names = TopicNames.from_settings(settings)
    data = sorted(set(names.data.values()))
    relay, worker = f"User:{relay_user}", f"User:{worker_user}"
    control = control_group(settings.worker_group)
    acls = [KafkaAcl(relay, "topic", t, "literal", ("Write", "Read", "Describe")) for t in data]
    acls.append(KafkaAcl(relay, "topic", names.position, "literal", ("Write", "Read", "Describe")))
    # Its own dead letters: rows that break the contract.
    acls.append(KafkaAcl(relay, "topic", names.dlq, "literal", ("Write", "Describe")))
    acls.append(KafkaAcl(relay, "transactional-id", relay_transactional_id(settings), "literal", ("Write", "Describe")))
    acls += [KafkaAcl(worker, "topic", t, "literal", ("Read", "Describe")) for t in data]
    acls.append(KafkaAcl(worker, "topic", names.dlq, "literal", ("Write", "Describe")))
    acls.append(KafkaAcl(worker, "group", settings.worker_group, "literal", ("Read", "Describe")))
    acls.append(KafkaAcl(worker, "group", control, "literal", ("Read", "Describe")))
    # Faust's leader topic (`<control group>-__assignor-__leader`), which it creates itself.
    acls.append(KafkaAcl(worker, "topic", f"{control}-", "prefixed", ("Create", "Read", "Write", "Describe")))
    return acls


def kafka_acls_arguments(acl: KafkaAcl) -> list[str]:
    """The arguments after `kafka-acls.sh --bootstrap-server ... --command-config ...` that add `acl`."""
    args = ["--add", "--allow-principal", acl.principal, f"--{acl.resource_type}", acl.resource]
    args += ["--resource-pattern-type", acl.pattern]
    for operation in acl.operations:
        args += ["--operation", operation]
    return args


# Kafka's protocol codes (org.apache.kafka.common.resource / acl).
_RESOURCE = {"topic": 2, "group": 3, "transactional-id": 5}
_PATTERN = {"literal": 3, "prefixed": 4}
_OPERATION = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8}
_ALLOW = 3


async def apply_acls(kafka: KafkaConnection, acls: Sequence[KafkaAcl]) -> int:
    """Add `acls` through the Admin API as the settings' (super) user; return how many bindings were added. Adding
    a binding that exists changes nothing, so this is safe to run on every deployment."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(**kafka_options(kafka), request_timeout_ms=15_000)
    await admin.start()
    added = 0
    try:
        for acl in acls:
            for operation in acl.operations:
                request = CreateAclsRequest(
                    _RESOURCE[acl.resource_type],
                    acl.resource,
                    _PATTERN[acl.pattern],
                    acl.principal,
                    "*",
                    _OPERATION[operation],
                    _ALLOW,
                )
                # aiokafka has the request but no public call for it.
                response = await admin._send_request(request)
                for code, message in response.creation_responses:
                    if code:
                        raise KafkaAclError(
                            f"cannot allow {operation} on {acl.resource_type} {acl.resource} to "
                            f"{acl.principal}: error {code} {message}"
                        )
                added += 1
    finally:
        await admin.close()
    return added


class KafkaAclError(Exception):
    """The broker refused an ACL (no authorizer, or the user may not alter ACLs)."""
