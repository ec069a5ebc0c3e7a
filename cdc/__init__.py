"""Change-data capture: tail the integration_outbox through the binlog and publish to Kafka."""
