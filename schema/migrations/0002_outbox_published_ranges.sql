-- What the relay has committed to Kafka (binlog mode), as inclusive runs of outbox ids per relay source. One short
-- row per run instead of an UPDATE of every outbox row: marking rows cost MariaDB more CPU than inserting them and
-- wrote each payload into the binlog twice more (before and after images). The janitor deletes the outbox rows of a
-- run, and then the run, once the run is older than the retention. Polling mode keeps marking rows (it selects by
-- the flag inside its own transaction).
CREATE TABLE integration_outbox_published (
    relay_source  VARCHAR(64)     NOT NULL,
    first_id      BIGINT UNSIGNED NOT NULL,
    last_id       BIGINT UNSIGNED NOT NULL,
    published_at  TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (relay_source, first_id),
    KEY idx_outbox_published_at (published_at),
    KEY idx_outbox_published_ids (first_id, last_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The operator's view of the outbox: `published` and `published_at` say whether and when a relay committed the row
-- to Kafka, whichever mode recorded it (the row flags of polling mode, or a run of integration_outbox_published).
CREATE SQL SECURITY INVOKER VIEW integration_outbox_status AS
SELECT
    o.id, o.event_type, o.aggregate_type, o.aggregate_id, o.schema_version, o.created_at,
    (o.published OR EXISTS (
        SELECT 1 FROM integration_outbox_published p WHERE o.id BETWEEN p.first_id AND p.last_id
    )) AS published,
    COALESCE(o.published_at, (
        SELECT MIN(p.published_at) FROM integration_outbox_published p WHERE o.id BETWEEN p.first_id AND p.last_id
    )) AS published_at
FROM integration_outbox o;
