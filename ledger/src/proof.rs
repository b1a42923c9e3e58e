//! Proof documents a user can carry around and check offline with only the cluster's public
//! key: that one record is in the log as of a signed checkpoint ([`InclusionProof`]), and
//! that a later checkpoint extends an earlier one ([`ConsistencyProof`]).
//!
//! An inclusion proof is two Merkle paths stacked: the record's leaf up to its object's
//! Merkle root, then the object's summary up to the archive tree root the checkpoint signs.
//! Everything is checked against the signed checkpoint, so nothing in the document has to be
//! trusted: a changed record, offset, summary or path fails one of the checks, and `verify`
//! says which.

use pyralog_types::Record;
use serde::{Deserialize, Serialize};

use crate::chain::{canonical_record, leaf_hash};
use crate::checkpoint::{parse_json, SignedCheckpoint, VerifyingKey};
use crate::error::LedgerError;
use crate::hash::{hex_hash, hex_hashes, Hash};
use crate::merkle::{empty_root, verify_consistency, verify_inclusion};
use crate::object::ObjectSummary;

/// The largest proof document `from_json` parses.
pub const MAX_PROOF_JSON: usize = 1024 * 1024;

/// Proof that one record is in a partition's archive as of a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub log: String,
    pub partition: u32,
    /// The record's offset.
    pub offset: u64,
    /// The record's RFC 6962 leaf hash ([`leaf_hash`] of its canonical bytes).
    #[serde(with = "hex_hash")]
    pub record_leaf: Hash,
    /// The record's position among the object's records (not `offset - base_offset`:
    /// compaction leaves gaps in offsets).
    pub index_in_object: u64,
    /// The archived object holding the record.
    pub object: ObjectSummary,
    /// Audit path from `record_leaf` to `object.merkle_root`.
    #[serde(with = "hex_hashes")]
    pub object_path: Vec<Hash>,
    /// The object's position in the archive tree.
    pub object_index: u64,
    /// Audit path from `object.leaf()` to `checkpoint.root`.
    #[serde(with = "hex_hashes")]
    pub tree_path: Vec<Hash>,
    pub checkpoint: SignedCheckpoint,
}

impl InclusionProof {
    /// Checks the checkpoint's signature and both Merkle paths: the record leaf is in the
    /// object, and the object is in the archive tree the checkpoint signs.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), LedgerError> {
        self.checkpoint.verify(key)?;
        let cp = &self.checkpoint.checkpoint;
        if self.log != cp.log || self.partition != cp.partition {
            return Err(mismatch(format!(
                "the proof is for {}/{} but the checkpoint for {}/{}",
                self.log, self.partition, cp.log, cp.partition
            )));
        }
        let o = &self.object;
        if self.offset < o.base_offset || self.offset > o.last_offset {
            return Err(mismatch(format!(
                "offset {} is outside the object's offsets {}..={}",
                self.offset, o.base_offset, o.last_offset
            )));
        }
        // A ledger has no gaps: an object holds every offset of its range, in order, so the
        // offset is bound to the leaf's position (and both are in the signed object leaf).
        let span = o.last_offset - o.base_offset + 1;
        if o.record_count != span || self.index_in_object != self.offset - o.base_offset {
            return Err(mismatch(format!(
                "offset {} is not leaf {} of an object of {} records over {}..={}",
                self.offset, self.index_in_object, o.record_count, o.base_offset, o.last_offset
            )));
        }
        verify_inclusion(
            &self.record_leaf,
            self.index_in_object,
            o.record_count,
            &self.object_path,
            &o.merkle_root,
        )
        .map_err(|e| within("the record in its object", e))?;
        verify_inclusion(
            &o.leaf(),
            self.object_index,
            cp.tree_size,
            &self.tree_path,
            &cp.root,
        )
        .map_err(|e| within("the object in the checkpoint's archive tree", e))
    }

    /// [`InclusionProof::verify`], and that `record` is the record the proof is about (same
    /// offset, same leaf hash).
    pub fn verify_record(&self, key: &VerifyingKey, record: &Record) -> Result<(), LedgerError> {
        self.verify(key)?;
        if record.offset.0 != self.offset {
            return Err(mismatch(format!(
                "the record has offset {} but the proof is for offset {}",
                record.offset.0, self.offset
            )));
        }
        let mut canonical = Vec::new();
        canonical_record(record, &mut canonical);
        if leaf_hash(&canonical) != self.record_leaf {
            return Err(mismatch(format!(
                "the record at offset {} differs from the one the proof covers",
                self.offset
            )));
        }
        Ok(())
    }

    /// The JSON document (pretty-printed: users read and pass these around).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a proof always serializes")
    }

    /// Parses a JSON document, refusing anything over [`MAX_PROOF_JSON`] bytes unread.
    /// Parsing does not verify: call [`InclusionProof::verify`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, LedgerError> {
        parse_json(bytes, MAX_PROOF_JSON)
    }
}

/// Proof that the archive tree signed by `new` extends the one signed by `old`: nothing `old`
/// covered was changed, dropped or reordered since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub old: SignedCheckpoint,
    pub new: SignedCheckpoint,
    /// RFC 6962 consistency proof from `old.tree_size` to `new.tree_size`.
    #[serde(with = "hex_hashes")]
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks both signatures, that both checkpoints are of one partition, and the
    /// consistency path between their roots. Equal sizes need equal roots; an old checkpoint
    /// of an empty tree is extended by any tree.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), LedgerError> {
        self.old.verify(key)?;
        self.new.verify(key)?;
        let (old, new) = (&self.old.checkpoint, &self.new.checkpoint);
        if old.log != new.log || old.partition != new.partition {
            return Err(mismatch(format!(
                "the checkpoints are of different partitions: {}/{} and {}/{}",
                old.log, old.partition, new.log, new.partition
            )));
        }
        if old.tree_size > new.tree_size {
            return Err(LedgerError::BadTreeSizes {
                old_size: old.tree_size,
                new_size: new.tree_size,
            });
        }
        if old.tree_size == 0 {
            if old.root != empty_root() {
                return Err(mismatch(
                    "the old checkpoint covers no objects but its root is not the empty tree's"
                        .into(),
                ));
            }
            if !self.path.is_empty() {
                return Err(LedgerError::WrongPathLength {
                    what: "the consistency proof",
                    expected: 0,
                    found: self.path.len(),
                });
            }
            return Ok(());
        }
        verify_consistency(
            old.tree_size,
            new.tree_size,
            &old.root,
            &new.root,
            &self.path,
        )
    }

    /// The JSON document (pretty-printed).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a proof always serializes")
    }

    /// Parses a JSON document, refusing anything over [`MAX_PROOF_JSON`] bytes unread.
    /// Parsing does not verify: call [`ConsistencyProof::verify`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, LedgerError> {
        parse_json(bytes, MAX_PROOF_JSON)
    }
}

fn mismatch(what: String) -> LedgerError {
    LedgerError::ProofMismatch { what }
}

/// Says which of the two paths a Merkle failure is in.
fn within(step: &str, e: LedgerError) -> LedgerError {
    mismatch(format!("{step}: {e}"))
}
