//! Errors of the cold tier.
//!
//! One enum for the crate, because every caller (gateway, compactor, CLI) asks the same two
//! questions of a cold-tier failure: *may I retry?* ([`ColdError::is_retriable`]) and *what
//! do I tell the operator?* (the message). Object-store failures keep their source so the
//! cause (HTTP status, connection refused, ...) is never lost; bad content is always
//! [`ColdError::Corrupt`], which is never retriable: the cold tier returns an error rather
//! than wrong data.

use std::fmt;

use pyralog_types::{LogId, LogOffset, PartitionId};

/// What a failed access check found, named so an operator can fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessProblem {
    /// The bucket (or container, or local folder) does not exist.
    BucketMissing,
    /// The store refused the credentials (unknown key, bad signature, expired token).
    CredentialsRejected,
    /// The credentials were accepted but lack a needed permission.
    PermissionDenied,
    /// Nothing answered at the endpoint (refused, DNS failure, timeout).
    EndpointUnreachable,
    /// The probe object read back differently from what was written.
    Inconsistent,
    /// Any other failure; the detail says what.
    Other,
}

impl fmt::Display for AccessProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessProblem::BucketMissing => "bucket missing",
            AccessProblem::CredentialsRejected => "credentials rejected",
            AccessProblem::PermissionDenied => "permission denied",
            AccessProblem::EndpointUnreachable => "endpoint unreachable",
            AccessProblem::Inconsistent => "store returned different bytes than written",
            AccessProblem::Other => "object store error",
        })
    }
}

/// A cold-tier failure.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    /// The object-store configuration cannot work (bad URL, unknown scheme, ...).
    #[error("object store configuration: {0}")]
    Config(String),

    /// The startup probe failed; `problem` names the cause.
    #[error("object store access check failed: {problem} ({detail})")]
    Access {
        problem: AccessProblem,
        detail: String,
    },

    /// An object-store call failed (network, throttling, server error, missing object).
    #[error("object store {op} of {path} failed: {source}")]
    Store {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },

    /// Bytes in the bucket are not what the cold tier wrote: a bad Parquet file, a schema we
    /// do not know, records outside the segment's range, a manifest that breaks its rules.
    #[error("corrupt cold data in {what}: {reason}")]
    Corrupt { what: String, reason: String },

    /// The caller passed something the cold tier cannot store (empty or unordered batches,
    /// a manifest whose version does not follow the expected one, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The offset was archived once but retention has removed it; `start` is the first
    /// archived offset now.
    #[error("offset {requested} is below the archive's start {start}")]
    BelowStart {
        requested: LogOffset,
        start: LogOffset,
    },

    /// Another writer committed a manifest version first; reload and retry.
    #[error(
        "manifest conflict for {log}/{partition}: version {attempted} was committed by another writer"
    )]
    ManifestConflict {
        log: LogId,
        partition: PartitionId,
        attempted: u64,
    },

    /// A streamed upload's writer stopped before the end of the file (it failed, or found
    /// nothing to write); nothing was stored. The writer's own result says why.
    #[error("upload of {path} stopped: the file being written did not reach its end")]
    Incomplete { path: String },

    /// An object already exists at a segment key with different content. Segment keys are
    /// derived from offsets (and compaction generation), so this means two writers encoded
    /// the same range differently: a bug or a split brain, never retried.
    #[error("object {path} already exists with different content ({existing} vs {ours} bytes)")]
    ObjectMismatch {
        path: String,
        existing: u64,
        ours: u64,
    },

    /// Putting a stored object under write-once retention (S3 Object Lock) failed; the
    /// manifest that would name it is not committed.
    #[error("object lock of {path} failed: {detail}")]
    Lock {
        path: String,
        detail: String,
        retriable: bool,
    },
}

impl ColdError {
    /// Whether the same call may succeed if repeated later. Store failures and manifest
    /// conflicts (after a reload) are retriable; corrupt content, invalid input and
    /// configuration problems are not.
    pub fn is_retriable(&self) -> bool {
        match self {
            ColdError::Store { source, .. } => store_error_is_transient(source),
            ColdError::ManifestConflict { .. } => true,
            ColdError::Lock { retriable, .. } => *retriable,
            ColdError::BelowStart { .. } => false,
            ColdError::Access { problem, .. } => {
                matches!(problem, AccessProblem::EndpointUnreachable)
            }
            ColdError::Config(_)
            | ColdError::Corrupt { .. }
            | ColdError::InvalidInput(_)
            | ColdError::Incomplete { .. }
            | ColdError::ObjectMismatch { .. } => false,
        }
    }

    pub(crate) fn store(
        op: &'static str,
        path: impl fmt::Display,
        source: object_store::Error,
    ) -> Self {
        ColdError::Store {
            op,
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl fmt::Display, reason: impl fmt::Display) -> Self {
        ColdError::Corrupt {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Whether an object-store error may go away by itself (network, 5xx, throttling, timeouts).
/// Errors that need a human or a code change (missing bucket, bad credentials, unsupported
/// operation, invalid path) are not transient.
pub(crate) fn store_error_is_transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        E::Generic { .. } | E::JoinError { .. } => true,
        // A missing object is reported as NotFound; it can appear later only through a
        // manifest reload, so the *call* is retriable after one.
        E::NotFound { .. } => true,
        E::Precondition { .. } | E::NotModified { .. } | E::AlreadyExists { .. } => true,
        E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => false,
        _ => true,
    }
}
