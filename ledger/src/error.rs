//! The one error type of the ledger crate. Every variant names what failed in words an
//! operator can act on: a proof that does not verify is evidence of tampering (or of a proof
//! for another log, key or checkpoint), and the message has to say which check caught it.

/// Why decoding, signing input or verifying a proof failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A log config or an object's seal names a chain definition this build does not know
    /// (written by a newer version).
    #[error("ledger chain version {0} is not known to this build (it knows 2 and 3): upgrade the verifier")]
    UnknownChainVersion(u8),

    /// A hex field (hash, key, seed, signature) is not hex or has the wrong length.
    #[error("{what} is not valid hex of the expected length: {reason}")]
    BadHex { what: &'static str, reason: String },

    /// A public or secret key that is not a usable Ed25519 key.
    #[error("not a usable Ed25519 key: {0}")]
    BadKey(String),

    /// The checkpoint's signature does not verify under the given key: the checkpoint was
    /// altered after signing, or the signature is not an Ed25519 signature over it.
    #[error("the checkpoint signature of key {key_id} does not verify: the checkpoint was altered after signing or the signature is corrupt")]
    BadSignature { key_id: String },

    /// The checkpoint was signed by another key than the one given to verify it.
    #[error("the checkpoint is signed by key {found}, but the verifying key is {expected}: use the public key of the cluster that signed it")]
    UnknownKey { expected: String, found: String },

    /// A proof's hashes, offsets or names do not lead to what they claim; `what` says which
    /// check failed.
    #[error("proof does not verify: {what}")]
    ProofMismatch { what: String },

    /// A leaf index at or past the end of its tree.
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },

    /// A proof path with the wrong number of hashes for its tree sizes.
    #[error("{what} has {found} hashes, but a proof for these tree sizes has {expected}")]
    WrongPathLength {
        what: &'static str,
        expected: usize,
        found: usize,
    },

    /// Tree sizes a consistency proof cannot exist for (the old tree empty or larger than the
    /// new one: a newer checkpoint never covers fewer objects, unless the log was rolled back).
    #[error("no consistency proof exists from a tree of {old_size} to a tree of {new_size} leaves (a newer checkpoint covering fewer objects means the archive was rolled back)")]
    BadTreeSizes { old_size: u64, new_size: u64 },

    /// An input over the size limit of its kind, refused before parsing.
    #[error("input is larger than the {limit}-byte limit for this kind of document")]
    TooLarge { limit: usize },

    /// An input that is not the expected JSON document.
    #[error("malformed JSON: {0}")]
    Json(String),
}
