//! Ledger audit: what proves a ledger log's archive, read and written in the bucket.
//!
//! `pyralog-ledger` has the primitives (hash chain, RFC 6962 trees, signatures); the cold tier
//! writes each ledger object with its chain column and seal ([`pyralog_cold_tier::LedgerSeal`])
//! and records the seal in the manifest. This crate adds what needs the bucket:
//!
//! - [`CheckpointStore`] and [`Checkpointer`]: after each archive commit of a ledger
//!   partition, the node signs a checkpoint (the root of the *archive tree*, whose leaves are
//!   the objects' summaries in offset order) and writes it, create-only, to
//!   `{prefix}/_ledger/log={log}/partition={p}/{tree_size:020}.json`. Checkpoints are what
//!   make a rolled-back manifest or a rewritten history visible: a manifest can be replaced,
//!   a signature cannot be forged without the key.
//! - [`verify_log`]: everything checkable from the bucket alone, no node needed: each object's
//!   rows against their chain column and the manifest's seal, the chain across objects, dense
//!   offsets, every checkpoint's signature and root against the manifest. It reports findings
//!   that name the partition, object and first broken offset instead of stopping at the first.
//! - [`inclusion_proof`] and [`consistency_proof`]: proofs a user can carry and check
//!   offline (`pyralog_ledger::InclusionProof::verify`).

mod checkpoints;
mod error;
mod findings;
mod keyfile;
mod manifest_links;
mod proofs;
mod tree;
mod verify;

pub use checkpoints::{CheckpointStore, Checkpointer};
pub use error::AuditError;
pub use keyfile::create_key_file;
pub use proofs::{consistency_proof, inclusion_proof};
pub use tree::{archive_leaves, summaries};
pub use verify::{verify_log, Finding, PartitionReport, VerifyOptions, VerifyReport};
