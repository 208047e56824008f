-- 004: the processor's commit points (offset + dedup state), one row per committed offset.
--
-- Kafka stores a commit's metadata next to the offset, but tansu 0.6 answers OffsetFetch with
-- EMPTY metadata, so the dedup state a replay needs (horizon, watermark, horizon_since: see
-- `processor/src/dedup.rs`) is also written here, AFTER the batch's rows and rollups and BEFORE
-- the Kafka commit. On assignment the processor reads Kafka's committed offset, then the row
-- with exactly that offset; a row whose offset was never committed (crash between this insert
-- and the commit) is simply never looked up.
--
-- Several commit points can share an offset (the oldest open window did not move but the
-- horizon or watermark did), with different metadata: the LATEST one is the truth, as in Kafka.
-- ReplacingMergeTree(version), version = Unix milliseconds of the write (one processor writes a
-- partition's points sequentially, each after a ClickHouse round trip, so they never tie); the
-- processor reads `ORDER BY version DESC LIMIT 1`, which is right before merges too.
-- Small: one row per partition per batch (about one per second per partition); old rows are
-- harmless and can be dropped by hand (`ALTER TABLE processor_checkpoints DELETE WHERE ...`).
CREATE TABLE IF NOT EXISTS processor_checkpoints
(
    consumer_group String,
    topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    metadata String,
    written_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (consumer_group, topic, kafka_partition, kafka_offset);
