//! The archive tree: one leaf per archived object of a partition, in offset order.

use pyralog_cold_tier::Manifest;
use pyralog_ledger::{Hash, ObjectSummary};

use crate::error::AuditError;

/// The summaries of a ledger manifest's objects, in order. An object without a seal is an
/// error naming it: a ledger partition's archive never has one.
pub fn summaries(manifest: &Manifest) -> Result<Vec<ObjectSummary>, AuditError> {
    manifest
        .segments
        .iter()
        .map(|s| {
            s.ledger
                .map(|seal| seal.summary(s.base_offset.0, s.last_offset.0, s.record_count))
                .ok_or_else(|| {
                    AuditError::Unprovable(format!(
                        "archived object {} has no ledger seal (not a ledger log?)",
                        s.key
                    ))
                })
        })
        .collect()
}

/// The leaf hashes of the archive tree over `objects`.
pub fn archive_leaves(objects: &[ObjectSummary]) -> Vec<Hash> {
    objects.iter().map(ObjectSummary::leaf).collect()
}
