//! Palisade's processor: consumes reports from Kafka, deduplicates, enriches and batch-writes
//! them into ClickHouse. Not built yet: this crate is a placeholder until the processor issue.
