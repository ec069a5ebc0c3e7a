"""The connection arguments every Kafka client of tenderhub is built with (relay, workers, tools, benches): the
bootstrap servers and the security settings (TLS, SASL), declared once in `schema.settings`."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from schema.settings import Settings


def client_options(
    bootstrap: str,
    protocol: str = "PLAINTEXT",
    *,
    cafile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    check_hostname: bool = True,
    mechanism: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """aiokafka's connection arguments for `protocol`: for SSL and SASL_SSL a TLS context trusting `cafile` (or the
    system's CAs) with a client certificate if given; for SASL_* the mechanism and the user's credentials."""
    options: dict[str, Any] = {"bootstrap_servers": bootstrap, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        context: ssl.SSLContext = create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile)
        context.check_hostname = check_hostname
        options["ssl_context"] = context
    if protocol.startswith("SASL_"):
        options.update(sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password)
    return options


# What a Kafka helper connects with: the settings (their security applies), or bare bootstrap servers (PLAINTEXT:
# the local stack's own broker, tests of it).
KafkaConnection = Settings | str


def kafka_options(kafka: KafkaConnection) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    if isinstance(kafka, str):
        return client_options(kafka)
    password = kafka.kafka_sasl_password
    return client_options(
        kafka.kafka_bootstrap,
        kafka.kafka_security_protocol,
        cafile=kafka.kafka_ssl_cafile,
        certfile=kafka.kafka_ssl_certfile,
        keyfile=kafka.kafka_ssl_keyfile,
        check_hostname=kafka.kafka_ssl_check_hostname,
        mechanism=kafka.kafka_sasl_mechanism,
        username=kafka.kafka_sasl_username,
        password=password.get_secret_value() if password is not None else None,
    )
