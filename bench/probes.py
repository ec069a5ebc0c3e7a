"""What the benchmarks share to measure Kafka: the independent consumer that sees what a reader would see."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer


def measuring_consumer(bootstrap: str, *topics: str, from_start: bool = False) -> AIOKafkaConsumer:
    """A read_committed consumer outside any group (nothing committed), from the end of the topics unless
    `from_start`. Its fetch wait is 10 ms: the broker may hold a read_committed fetch to its deadline even after the
    relay's commit (seen as 1.4-1.5 s pauses with Faust's 1,500 ms), and that is not the latency being measured."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest" if from_start else "latest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=10,
    )
