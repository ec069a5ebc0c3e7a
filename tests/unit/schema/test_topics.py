"""Declared topics: one per aggregate type, a DLQ with a larger message cap, a compacted relay position."""

from __future__ import annotations

import pytest

from schema.settings import Settings, SettingsError
from schema.topics import DATA_MAX_MESSAGE_BYTES, DLQ_MAX_MESSAGE_BYTES, TopicNames, topic_specs


@pytest.fixture
def settings() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mysql_url="mysql+pymysql://a:b@h:1/d",
        relay_mysql_url="mysql+pymysql://c:d@h:1/d",
        kafka_bootstrap="h:1",
        mongo_url="mongodb://h:1/",
        redis_url="redis://h:1/0",
    )


def test_one_topic_per_aggregate_type(settings: Settings) -> None:
    names = {s.name for s in topic_specs(settings)}
    assert {"tenderhub.tender", "tenderhub.company", "tenderhub.activity"} <= names


def test_dlq_accepts_larger_messages_than_data_topics(settings: Settings) -> None:
    specs = {s.name: s for s in topic_specs(settings)}
    assert int(specs["tenderhub.dlq"].configs["max.message.bytes"]) == DLQ_MAX_MESSAGE_BYTES
    assert int(specs["tenderhub.tender"].configs["max.message.bytes"]) == DATA_MAX_MESSAGE_BYTES
    assert DLQ_MAX_MESSAGE_BYTES > DATA_MAX_MESSAGE_BYTES


def test_relay_position_topic_is_compacted(settings: Settings) -> None:
    specs = {s.name: s for s in topic_specs(settings)}
    configs = specs["tenderhub.relay.position"].configs
    assert configs["cleanup.policy"] == "compact"
    # Closed segments are what compaction cleans: one that rolls within minutes keeps the topic small.
    assert int(configs["segment.ms"]) <= 3600 * 1000


def test_topic_map_overrides_the_prefix_per_aggregate(settings: Settings) -> None:
    custom = settings.model_copy(update={"topic_map": {"tender": "prod.tenders.v1"}})
    names = TopicNames.from_settings(custom)
    assert names.data["tender"] == "prod.tenders.v1" and names.data["company"] == "tenderhub.company"
    assert "prod.tenders.v1" in {s.name for s in topic_specs(custom)}


def test_topic_map_refuses_unknown_aggregates(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="unknown aggregate types"):
        TopicNames.from_settings(settings.model_copy(update={"topic_map": {"tendr": "x"}}))
