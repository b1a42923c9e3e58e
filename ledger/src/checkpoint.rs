//! Signed checkpoints: a partition's archive tree head, signed with the cluster's Ed25519 key.
//!
//! A checkpoint states "the archive tree of this partition had `tree_size` objects and this
//! root, ending at this offset and chain head". Once a user holds one, the operator cannot
//! rewrite, drop or roll back anything it covers without the change showing: inclusion proofs
//! are checked against its root, and a later checkpoint must come with a consistency proof
//! that its tree extends this one.
//!
//! The signature is over [`Checkpoint::signing_bytes`], a fixed binary encoding, never over
//! JSON: JSON formatting (whitespace, field order, escapes) may change on the way without
//! breaking a signature, and a verifier in another language rebuilds the bytes from the
//! fields alone. Keys are named by a short id (the first 8 bytes of SHA-256 of the public
//! key) so a verifier holding the wrong key gets "signed by another key", not "bad signature".

use std::fmt;

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chain::put_len;
use crate::error::LedgerError;
use crate::hash::{decode_fixed, hex_hash, Hash};

/// The prefix of a checkpoint's signed bytes; the version changes if the encoding does.
pub const CHECKPOINT_DOMAIN: &[u8] = b"pyralog-ledger-checkpoint-v1";

/// The largest signed checkpoint document [`SignedCheckpoint::from_json`] parses.
pub const MAX_CHECKPOINT_JSON: usize = 64 * 1024;

/// A partition's archive tree head at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The log's name.
    pub log: String,
    /// The partition within the log.
    pub partition: u32,
    /// Archived objects covered (leaves of the archive tree).
    pub tree_size: u64,
    /// Offset of the last record covered.
    pub last_offset: u64,
    /// The archive tree's root over the objects' [`crate::ObjectSummary::leaf`] hashes.
    #[serde(with = "hex_hash")]
    pub root: Hash,
    /// The record chain's head after `last_offset`.
    #[serde(with = "hex_hash")]
    pub chain_head: Hash,
    /// Version of the archive manifest the checkpoint was taken from.
    pub manifest_version: u64,
    /// When the checkpoint was made (µs since the Unix epoch).
    pub time_us: i64,
}

impl Checkpoint {
    /// The bytes the signature covers:
    ///
    /// ```text
    /// "pyralog-ledger-checkpoint-v1" ‖ u32 BE len(log) ‖ log (UTF-8) ‖ u32 BE partition
    /// ‖ u64 BE tree_size ‖ u64 BE last_offset ‖ root (32) ‖ chain_head (32)
    /// ‖ u64 BE manifest_version ‖ i64 BE time_us
    /// ```
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + self.log.len() + 116);
        out.extend_from_slice(CHECKPOINT_DOMAIN);
        put_len(&mut out, self.log.len());
        out.extend_from_slice(self.log.as_bytes());
        out.extend_from_slice(&self.partition.to_be_bytes());
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.chain_head);
        out.extend_from_slice(&self.manifest_version.to_be_bytes());
        out.extend_from_slice(&self.time_us.to_be_bytes());
        out
    }
}

/// A checkpoint with the id of the key that signed it and the signature (both hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// Hex of the first 8 bytes of SHA-256 of the signer's public key.
    pub key_id: String,
    /// Hex of the 64-byte Ed25519 signature over [`Checkpoint::signing_bytes`].
    pub signature: String,
}

impl SignedCheckpoint {
    /// The JSON document (compact).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a checkpoint always serializes")
    }

    /// Parses a JSON document, refusing anything over [`MAX_CHECKPOINT_JSON`] bytes unread.
    /// Parsing does not verify: call [`SignedCheckpoint::verify`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, LedgerError> {
        parse_json(bytes, MAX_CHECKPOINT_JSON)
    }

    /// Checks that `key` made the signature over this checkpoint.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), LedgerError> {
        let expected = key.key_id();
        if self.key_id != expected {
            return Err(LedgerError::UnknownKey {
                expected,
                found: self.key_id.clone(),
            });
        }
        let bytes: [u8; 64] = decode_fixed(&self.signature, "the checkpoint signature")?;
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        // `verify_strict` also refuses malleable signatures and small-order keys.
        key.0
            .verify_strict(&self.checkpoint.signing_bytes(), &signature)
            .map_err(|_| LedgerError::BadSignature {
                key_id: self.key_id.clone(),
            })
    }
}

/// Parses JSON of at most `limit` bytes.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, LedgerError> {
    if bytes.len() > limit {
        return Err(LedgerError::TooLarge { limit });
    }
    serde_json::from_slice(bytes).map_err(|e| LedgerError::Json(e.to_string()))
}

/// An Ed25519 key that signs checkpoints. `Debug` shows only its key id.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        SigningKey(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The key from its 32-byte seed as 64 hex characters (surrounding whitespace ignored,
    /// so a key file with a trailing newline reads).
    pub fn from_seed_hex(s: &str) -> Result<Self, LedgerError> {
        let seed: [u8; 32] = decode_fixed(s.trim(), "the signing key seed")?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The seed as 64 lowercase hex characters: the secret to store.
    pub fn seed_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// The public half, for verifiers.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// Signs `checkpoint`.
    pub fn sign(&self, checkpoint: Checkpoint) -> SignedCheckpoint {
        let signature = self.0.sign(&checkpoint.signing_bytes());
        SignedCheckpoint {
            checkpoint,
            key_id: self.verifying_key().key_id(),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.verifying_key().key_id())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key that verifies checkpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// The key from its 32 bytes as 64 hex characters (surrounding whitespace ignored).
    /// Refuses encodings that are not a curve point and small-order ("weak") keys, under
    /// which forged signatures could verify.
    pub fn from_hex(s: &str) -> Result<Self, LedgerError> {
        let bytes: [u8; 32] = decode_fixed(s.trim(), "the public key")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| LedgerError::BadKey("not a point of the Ed25519 curve".into()))?;
        if key.is_weak() {
            return Err(LedgerError::BadKey(
                "a small-order key, under which signatures prove nothing".into(),
            ));
        }
        Ok(VerifyingKey(key))
    }

    /// The key as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Hex of the first 8 bytes of SHA-256 of the key: the name checkpoints carry.
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..8])
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("key_id", &self.key_id())
            .field("hex", &self.to_hex())
            .finish()
    }
}
