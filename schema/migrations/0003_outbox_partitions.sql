-- The outbox in ranges of ids, so that the janitor drops a whole range of published rows (one DDL statement in the
-- binlog, next to no work for the server) instead of deleting row by row (each row's full image logged once more,
-- about a third of what inserting it cost). It starts as one partition; the janitor splits off a partition per
-- TENDERHUB_RELAY_PARTITION_IDS ids ahead of the ids in use (`cdc.bookkeeping`, through definer procedures that
-- `tenderhub migrate` creates: the relay account never gets ALTER or DROP). On a large existing outbox this
-- statement rebuilds the table once.
ALTER TABLE integration_outbox PARTITION BY RANGE (id) (PARTITION pmax VALUES LESS THAN MAXVALUE);
