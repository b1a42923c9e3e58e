//! The ledger form of a segment file: every row carries the hash chain through it.
//!
//! A log created with `integrity = "ledger"` archives its records with one more column,
//! `chain` (32 bytes, field id [`super::field_ids::CHAIN`]): the SHA-256 chain head after
//! the row's record (`pyralog_ledger::chain_step` over the record's canonical bytes). The
//! chain runs across objects: an object's chain starts where the previous object of the
//! partition ended (at the partition's genesis for the first), so a changed, removed or
//! reordered record breaks every later chain value, and a verifier names the first row whose
//! stored value no longer follows. The object's seal ([`LedgerSeal`]: chain start and end,
//! and the RFC 6962 Merkle root over its records' leaf hashes) goes into the footer's
//! key-value metadata and into the object's manifest entry; the root is what inclusion
//! proofs and signed checkpoints are built on (`pyralog-ledger-audit`).
//!
//! Readers that do not care (SQL engines, the gateway's fetch path) see one extra column and
//! ignore it: every record column is taken by name or position before it.

use std::sync::Arc;

use arrow_array::{ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use pyralog_ledger::{ChainVersion, Hash, MerkleBuilder, ObjectSummary, RecordHasher};
use pyralog_types::Record;
use serde::{Deserialize, Serialize};

use super::{arrow_schema, field_ids, with_id};
use crate::error::ColdError;

/// Name of the chain column.
pub const CHAIN_COLUMN: &str = "chain";

/// The schema of a ledger segment: the record columns, then `chain`.
pub fn ledger_schema() -> SchemaRef {
    let mut fields: Vec<Field> = arrow_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(with_id(
        Field::new(CHAIN_COLUMN, DataType::FixedSizeBinary(32), false),
        field_ids::CHAIN,
    ));
    Arc::new(Schema::new(fields))
}

/// What seals one ledger object: where its chain starts and ends, and the Merkle root over
/// its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSeal {
    /// The chain head before the object's first record.
    #[serde(with = "pyralog_ledger::hex_hash")]
    pub chain_start: Hash,
    /// The chain head after its last record.
    #[serde(with = "pyralog_ledger::hex_hash")]
    pub chain_end: Hash,
    /// RFC 6962 root over the leaf hashes of its records, in offset order.
    #[serde(with = "pyralog_ledger::hex_hash")]
    pub merkle_root: Hash,
    /// The chain definition its rows were chained with ([`ChainVersion::number`]); objects
    /// archived before seals named one are version 2.
    #[serde(default = "legacy_chain_version")]
    pub chain_version: u8,
}

fn legacy_chain_version() -> u8 {
    ChainVersion::V2.number()
}

impl LedgerSeal {
    /// The archive-tree leaf of an object holding `record_count` records `[base, last]`.
    pub fn summary(&self, base: u64, last: u64, record_count: u64) -> ObjectSummary {
        ObjectSummary {
            base_offset: base,
            last_offset: last,
            record_count,
            chain_start: self.chain_start,
            chain_end: self.chain_end,
            merkle_root: self.merkle_root,
        }
    }
}

/// The chain and tree of a ledger object being written.
pub(crate) struct LedgerState {
    start: Hash,
    version: ChainVersion,
    hasher: RecordHasher,
    tree: MerkleBuilder,
    /// Chain values of the rows not yet written, in order.
    pending: Vec<Hash>,
}

impl LedgerState {
    pub(crate) fn new(chain_start: Hash, version: ChainVersion) -> Self {
        LedgerState {
            start: chain_start,
            version,
            hasher: RecordHasher::with_version(chain_start, version),
            tree: MerkleBuilder::new(),
            pending: Vec::new(),
        }
    }

    pub(crate) fn observe(&mut self, record: &Record) {
        let (chain, leaf) = self.hasher.push(record);
        self.tree.push(leaf);
        self.pending.push(chain);
    }

    /// `rb` with the chain column of its rows appended (the oldest pending values).
    pub(crate) fn append_column(&mut self, rb: RecordBatch) -> Result<RecordBatch, ColdError> {
        let rows = rb.num_rows();
        if rows > self.pending.len() {
            return Err(ColdError::InvalidInput(format!(
                "ledger: {rows} rows but {} chain values",
                self.pending.len()
            )));
        }
        let chains = FixedSizeBinaryArray::try_from_iter(self.pending.drain(..rows))
            .map_err(|e| ColdError::InvalidInput(format!("chain column: {e}")))?;
        let mut columns = rb.columns().to_vec();
        columns.push(Arc::new(chains) as ArrayRef);
        RecordBatch::try_new(ledger_schema(), columns)
            .map_err(|e| ColdError::InvalidInput(format!("ledger record batch: {e}")))
    }

    pub(crate) fn seal(&self) -> LedgerSeal {
        LedgerSeal {
            chain_start: self.start,
            chain_end: self.hasher.chain(),
            merkle_root: self.tree.root(),
            chain_version: self.version.number(),
        }
    }
}

/// The chain column of a decoded ledger row group (`None`: the file has none).
pub fn chain_column(rb: &RecordBatch) -> Result<Option<&FixedSizeBinaryArray>, ColdError> {
    let Some(col) = rb.column_by_name(CHAIN_COLUMN) else {
        return Ok(None);
    };
    col.as_any()
        .downcast_ref::<FixedSizeBinaryArray>()
        .filter(|a| a.value_length() == 32)
        .map(Some)
        .ok_or_else(|| ColdError::corrupt("ledger object", "chain column is not 32-byte binary"))
}
