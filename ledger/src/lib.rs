//! The cryptography of ledger mode: what makes a Pyralog log tamper-evident, as pure
//! functions (no I/O, no async) that the broker, the archiver and offline verifiers share.
//!
//! What it proves, and how:
//!
//! - **The hash chain** ([`chain`]) links every record of a partition to the one before it,
//!   from a genesis hash naming the partition. Altering, reordering, inserting or deleting a
//!   record changes every later chain head, so one trusted head vouches for all history
//!   before it.
//! - **Merkle roots** ([`merkle`], RFC 6962) over each archived object's records give
//!   inclusion proofs of one record in `O(log n)` hashes, without the rest of the object.
//! - **The archive tree** over the objects' summaries ([`object`]), signed as **checkpoints**
//!   ([`checkpoint`], Ed25519), pins the whole archive at one moment. A later checkpoint comes
//!   with a consistency proof that its tree extends the earlier one, so dropping or rewriting
//!   archived objects, or rolling the archive back, cannot go unnoticed by anyone holding an
//!   old checkpoint.
//! - **Proof documents** ([`proof`]) bundle a record's two Merkle paths with a signed
//!   checkpoint as JSON a user can keep and check offline with only the public key.
//!
//! Why SHA-256 and RFC 6962: every verifier in any language has them, and transparency-log
//! tooling already implements exactly this tree, so checking a proof needs no Pyralog code.
//! Every hashed encoding is fixed-width big-endian with length prefixes and a versioned
//! domain string, documented next to its function, so it can be rebuilt byte for byte.

pub mod chain;
pub mod checkpoint;
pub mod error;
pub mod hash;
pub mod merkle;
pub mod object;
pub mod proof;

pub use chain::{
    canonical_record, canonical_view, chain_step, chain_step_v2, genesis, leaf_hash, ChainVersion,
    RecordHasher,
};
pub use checkpoint::{Checkpoint, SignedCheckpoint, SigningKey, VerifyingKey, MAX_CHECKPOINT_JSON};
pub use error::LedgerError;
pub use hash::{from_hex, hex_hash, hex_hashes, to_hex, Hash};
pub use merkle::{
    consistency_proof, inclusion_proof, root, verify_consistency, verify_inclusion, MerkleBuilder,
};
pub use object::ObjectSummary;
pub use proof::{ConsistencyProof, InclusionProof, MAX_PROOF_JSON};
