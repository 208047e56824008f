//! The stable fingerprint of "the same violation", and the dedup key that routes it in Kafka.

use crate::report::Report;

/// Stable 64-bit fingerprint of a report for a project. Stable across releases: changing the
/// inputs or the hash is a breaking change of the message format.
pub fn fingerprint(project_id: u64, report: &Report) -> u64 {
    let _ = (project_id, report);
    0
}

/// The key reports are deduplicated by downstream: same fingerprint from the same client.
pub fn dedup_key(fingerprint: u64, client: &str) -> u64 {
    let _ = (fingerprint, client);
    0
}
