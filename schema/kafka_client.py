"""The connection arguments every Kafka client of tenderhub is built with (relay, workers, tools, benches): the
bootstrap servers and the security settings (TLS, SASL), declared once in `schema.settings`."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from schema.settings import Settings


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context for SSL and SASL_SSL: the brokers' CA (or the system's), a client certificate if set."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


# What a Kafka helper connects with: the settings (their security applies), or bare bootstrap servers (PLAINTEXT:
# the local stack's own broker, tests of it).
KafkaConnection = Settings | str


def kafka_options(kafka: KafkaConnection) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    if isinstance(kafka, str):
        return {"bootstrap_servers": kafka, "security_protocol": "PLAINTEXT"}
    settings = kafka
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = kafka_ssl_context(settings)
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password is not None else None,
        )
    return options
