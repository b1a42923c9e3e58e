//! What `verify` reports: one [`Finding`] per thing found broken, named by partition, object
//! and first offset, each with the sentence an operator reads.

use pyralog_types::PartitionId;
use serde::Serialize;

/// One thing found broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The manifest names an object the bucket does not have.
    ObjectMissing {
        partition: PartitionId,
        object: String,
        first_offset: u64,
    },
    /// The object is there but is not a readable segment file.
    ObjectUnreadable {
        partition: PartitionId,
        object: String,
        detail: String,
    },
    /// A row's record does not hash to its stored chain value: it was changed.
    RecordAltered {
        partition: PartitionId,
        object: String,
        offset: u64,
    },
    /// A row holds another offset than the one expected there (objects swapped, records
    /// reordered or removed).
    RecordOutOfPlace {
        partition: PartitionId,
        object: String,
        expected: u64,
        found: u64,
    },
    /// The object's rows lack the chain column.
    ChainColumnMissing {
        partition: PartitionId,
        object: String,
    },
    /// The object's rows end before the last offset its manifest entry names (or the entry
    /// claims a record count its range cannot hold densely).
    RecordsMissing {
        partition: PartitionId,
        object: String,
        from: u64,
        to: u64,
    },
    /// Objects are archived but no checkpoint signed by a trusted key vouches for any of
    /// them: nothing stops their history from being rewritten consistently.
    NoTrustedCheckpoint {
        partition: PartitionId,
        objects: u64,
    },
    /// The object holds another number of records than its manifest entry says.
    RecordCountMismatch {
        partition: PartitionId,
        object: String,
        expected: u64,
        found: u64,
    },
    /// Every row follows its chain column, but the chain's end or the Merkle root is not the
    /// manifest's seal: the object was rewritten with a consistent, forged chain.
    SealMismatch {
        partition: PartitionId,
        object: String,
        what: String,
    },
    /// The object's chain does not start where the previous object's ended.
    ChainBroken {
        partition: PartitionId,
        object: String,
        first_offset: u64,
    },
    /// No object of the manifest holds these offsets.
    MissingRange {
        partition: PartitionId,
        from: u64,
        to: u64,
    },
    /// The bucket holds a partition the log's registry entry (which is not signed) does not
    /// count: the entry was edited, or the partition is left from something else. It is
    /// verified all the same.
    PartitionNotInRegistry {
        partition: PartitionId,
        registry_partitions: u32,
    },
    /// A manifest entry without a ledger seal.
    MissingSeal {
        partition: PartitionId,
        object: String,
    },
    /// A checkpoint that does not parse, or whose signature no trusted key verifies.
    CheckpointInvalid {
        partition: PartitionId,
        checkpoint: String,
        detail: String,
    },
    /// A signed checkpoint covers more objects than the manifest has: the manifest was rolled
    /// back (or objects were dropped from its end).
    RolledBack {
        partition: PartitionId,
        checkpoint_objects: u64,
        checkpoint_last_offset: u64,
        checkpoint_manifest_version: u64,
        manifest_objects: u64,
        manifest_version: u64,
    },
    /// The manifest's first `tree_size` objects do not have the root a checkpoint signed.
    HistoryRewritten {
        partition: PartitionId,
        checkpoint_objects: u64,
        checkpoint_last_offset: u64,
    },
    /// A kept manifest version does not link to the stored version before it: that version
    /// was edited (or replaced) after `version` was committed.
    ManifestLinkBroken {
        partition: PartitionId,
        version: u64,
        detail: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use Finding::*;
        match self {
            ObjectMissing {
                partition,
                object,
                first_offset,
            } => write!(
                f,
                "partition {partition}: object {object} (from offset {first_offset}) is missing \
                 from the bucket"
            ),
            ObjectUnreadable {
                partition,
                object,
                detail,
            } => {
                write!(
                    f,
                    "partition {partition}: object {object} is unreadable: {detail}"
                )
            }
            RecordAltered {
                partition,
                object,
                offset,
            } => write!(
                f,
                "partition {partition}: record at offset {offset} in {object} was altered (it \
                 no longer hashes to its chain value)"
            ),
            RecordOutOfPlace {
                partition,
                object,
                expected,
                found,
            } => write!(
                f,
                "partition {partition}: {object} holds offset {found} where offset {expected} \
                 belongs (objects swapped, or records removed or reordered)"
            ),
            RecordsMissing {
                partition,
                object,
                from,
                to,
            } => write!(
                f,
                "partition {partition}: {object} lacks offsets {from}..={to} that its manifest \
                 entry covers"
            ),
            NoTrustedCheckpoint { partition, objects } => write!(
                f,
                "partition {partition}: none of its {objects} archived objects is vouched for by \
                 a checkpoint signed with a trusted key (checkpoints deleted, or signed with \
                 another key: pass it with --public-key)"
            ),
            ChainColumnMissing { partition, object } => {
                write!(f, "partition {partition}: {object} has no chain column")
            }
            RecordCountMismatch {
                partition,
                object,
                expected,
                found,
            } => write!(
                f,
                "partition {partition}: {object} holds {found} records, its manifest entry \
                 {expected}"
            ),
            SealMismatch {
                partition,
                object,
                what,
            } => write!(
                f,
                "partition {partition}: {object}'s {what} is not the one the manifest sealed \
                 (the object was rewritten)"
            ),
            ChainBroken {
                partition,
                object,
                first_offset,
            } => write!(
                f,
                "partition {partition}: the chain of {object} (from offset {first_offset}) does \
                 not continue the previous object's"
            ),
            MissingRange {
                partition,
                from,
                to,
            } => write!(
                f,
                "partition {partition}: offsets {from}..={to} are in no archived object"
            ),
            PartitionNotInRegistry {
                partition,
                registry_partitions,
            } => write!(
                f,
                "partition {partition}: in the bucket, but the log's registry entry says \
                 {registry_partitions} partitions (edited?); verified anyway"
            ),
            MissingSeal { partition, object } => {
                write!(
                    f,
                    "partition {partition}: {object} has no ledger seal in the manifest"
                )
            }
            CheckpointInvalid {
                partition,
                checkpoint,
                detail,
            } => {
                write!(
                    f,
                    "partition {partition}: checkpoint {checkpoint}: {detail}"
                )
            }
            RolledBack {
                partition,
                checkpoint_objects,
                checkpoint_last_offset,
                checkpoint_manifest_version,
                manifest_objects,
                manifest_version,
            } => write!(
                f,
                "partition {partition}: manifest rolled back: a signed checkpoint covers \
                 {checkpoint_objects} objects through offset {checkpoint_last_offset} (manifest \
                 version {checkpoint_manifest_version}), the bucket's manifest (version \
                 {manifest_version}) has {manifest_objects}"
            ),
            HistoryRewritten {
                partition,
                checkpoint_objects,
                checkpoint_last_offset,
            } => write!(
                f,
                "partition {partition}: history rewritten: the first {checkpoint_objects} \
                 objects (through offset {checkpoint_last_offset}) do not have the root a \
                 signed checkpoint holds"
            ),
            ManifestLinkBroken {
                partition,
                version,
                detail,
            } => write!(
                f,
                "partition {partition}: manifest version {version} does not link to version {}: \
                 {detail}",
                version.saturating_sub(1)
            ),
        }
    }
}
