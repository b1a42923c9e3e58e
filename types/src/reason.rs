//! Stable, machine-readable error reasons.
//!
//! Every error that reaches a client carries one of these codes (in the gRPC status details as
//! `google.rpc.ErrorInfo.reason`, and in the `pyralog-reason` metadata key). Codes are part of
//! the wire contract: never rename or reuse one; add new ones at the end.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    InvalidRequest,
    InvalidLogName,
    InvalidConfig,
    LogNotFound,
    LogAlreadyExists,
    PartitionNotFound,
    RecordTooLarge,
    BatchTooLarge,
    CorruptBatch,
    CorruptData,
    OffsetOutOfRange,
    NotLeader,
    NotEnoughReplicas,
    Timeout,
    StorageError,
    ShuttingDown,
    Internal,
    GroupNotFound,
    GroupNotEmpty,
    UnknownMember,
    IllegalGeneration,
    NotAssigned,
    ProducerFenced,
    OutOfOrderSequence,
    /// No valid credentials: no token or client certificate, or one that is expired, forged
    /// or unknown, or plaintext on a TLS port.
    Unauthenticated,
    /// Authenticated, but the ACLs do not allow the call.
    PermissionDenied,
}

impl Reason {
    /// The wire spelling of the code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidRequest => "INVALID_REQUEST",
            Reason::InvalidLogName => "INVALID_LOG_NAME",
            Reason::InvalidConfig => "INVALID_CONFIG",
            Reason::LogNotFound => "LOG_NOT_FOUND",
            Reason::LogAlreadyExists => "LOG_ALREADY_EXISTS",
            Reason::PartitionNotFound => "PARTITION_NOT_FOUND",
            Reason::RecordTooLarge => "RECORD_TOO_LARGE",
            Reason::BatchTooLarge => "BATCH_TOO_LARGE",
            Reason::CorruptBatch => "CORRUPT_BATCH",
            Reason::CorruptData => "CORRUPT_DATA",
            Reason::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            Reason::NotLeader => "NOT_LEADER",
            Reason::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            Reason::Timeout => "TIMEOUT",
            Reason::StorageError => "STORAGE_ERROR",
            Reason::ShuttingDown => "SHUTTING_DOWN",
            Reason::Internal => "INTERNAL",
            Reason::GroupNotFound => "GROUP_NOT_FOUND",
            Reason::GroupNotEmpty => "GROUP_NOT_EMPTY",
            Reason::UnknownMember => "UNKNOWN_MEMBER",
            Reason::IllegalGeneration => "ILLEGAL_GENERATION",
            Reason::NotAssigned => "NOT_ASSIGNED",
            Reason::ProducerFenced => "PRODUCER_FENCED",
            Reason::OutOfOrderSequence => "OUT_OF_ORDER_SEQUENCE",
            Reason::Unauthenticated => "UNAUTHENTICATED",
            Reason::PermissionDenied => "PERMISSION_DENIED",
        }
    }

    /// Parses a wire code; unknown codes (from a newer server) map to `None`.
    pub fn parse(code: &str) -> Option<Reason> {
        Self::ALL.iter().copied().find(|r| r.as_str() == code)
    }

    /// Whether a client may retry the same request (possibly elsewhere) and expect success.
    pub const fn is_retriable(self) -> bool {
        matches!(
            self,
            Reason::NotLeader
                | Reason::NotEnoughReplicas
                | Reason::Timeout
                | Reason::StorageError
                | Reason::ShuttingDown
        )
    }

    pub const ALL: [Reason; 26] = [
        Reason::InvalidRequest,
        Reason::InvalidLogName,
        Reason::InvalidConfig,
        Reason::LogNotFound,
        Reason::LogAlreadyExists,
        Reason::PartitionNotFound,
        Reason::RecordTooLarge,
        Reason::BatchTooLarge,
        Reason::CorruptBatch,
        Reason::CorruptData,
        Reason::OffsetOutOfRange,
        Reason::NotLeader,
        Reason::NotEnoughReplicas,
        Reason::Timeout,
        Reason::StorageError,
        Reason::ShuttingDown,
        Reason::Internal,
        Reason::GroupNotFound,
        Reason::GroupNotEmpty,
        Reason::UnknownMember,
        Reason::IllegalGeneration,
        Reason::NotAssigned,
        Reason::ProducerFenced,
        Reason::OutOfOrderSequence,
        Reason::Unauthenticated,
        Reason::PermissionDenied,
    ];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate code {r}");
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("SOMETHING_NEW"), None);
    }
}
