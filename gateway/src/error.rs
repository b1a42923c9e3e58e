//! Gateway errors and their one mapping to gRPC statuses.
//!
//! Internal failures (hot tier, metadata) are converted into a [`GatewayError`] that says
//! what the caller can do; [`GatewayError::into_status`] is the only place a gRPC status is
//! made.

use pyralog_hot_tier::HotError;
use pyralog_types::batch::BatchError;
use pyralog_types::{LogId, LogIdError, LogOffset, PartitionId, Reason};
use tonic::Status;

use crate::metadata::MetadataError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid log name {name}: {source}")]
    InvalidLogName { name: String, source: LogIdError },
    #[error("log {0} does not exist")]
    LogNotFound(LogId),
    #[error("log {0} already exists")]
    LogAlreadyExists(LogId),
    #[error("log {log} has {count} partitions; partition {partition} does not exist")]
    PartitionNotFound {
        log: LogId,
        partition: PartitionId,
        count: u32,
    },
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("batch of {size} bytes exceeds max_batch_bytes {limit}")]
    BatchTooLarge { size: usize, limit: u32 },
    #[error("record of {size} bytes exceeds max_record_bytes {limit}")]
    RecordTooLarge { size: usize, limit: usize },
    /// A fetch whose first record (records format) or batch alone is over the response bound.
    #[error(
        "the {} at offset {offset} needs a {needed}-byte response, over this fetch's \
         max_response_bytes {max_response_bytes}: ask for a larger max_response_bytes (up to the \
         node's fetch.max_response_bytes) with a client receive limit to match",
        if *record { "record" } else { "batch" }
    )]
    ResponseTooLarge {
        record: bool,
        offset: u64,
        needed: usize,
        max_response_bytes: usize,
    },
    #[error("batch rejected: {0}")]
    CorruptBatch(BatchError),
    #[error("offset {requested} is out of range: the log holds [{earliest}, {latest})")]
    OffsetOutOfRange {
        requested: u64,
        earliest: LogOffset,
        latest: LogOffset,
    },
    #[error("stored data is corrupt: {0}")]
    CorruptData(String),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("not acknowledged within {0:?}; the write may or may not have happened")]
    Timeout(std::time::Duration),
    /// The write was appended here, but this node stopped leading its epoch before the ISR
    /// confirmed it: the new leader may or may not hold it. Answered as `TIMEOUT` (outcome
    /// unknown), never `NOT_LEADER`, which tells clients the write was not taken and may be
    /// sent again (that resend stored a record twice).
    #[error(
        "leadership moved before the write was replicated; it may or may not have happened ({0})"
    )]
    LeadershipMoved(String),
    #[error("not the leader: {detail}")]
    NotLeader {
        /// The leader's address, when known: clients retry there.
        leader: Option<String>,
        detail: String,
    },
    #[error("not enough in-sync replicas: {0}")]
    NotEnoughReplicas(String),
    #[error("unavailable, retry: {0}")]
    Unavailable(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
    /// A refusal with its own reason (group membership and fencing, producer fencing).
    #[error("{detail}")]
    Refused { reason: Reason, detail: String },
}

impl GatewayError {
    pub fn reason(&self) -> Reason {
        match self {
            GatewayError::InvalidLogName { .. } => Reason::InvalidLogName,
            GatewayError::LogNotFound(_) => Reason::LogNotFound,
            GatewayError::LogAlreadyExists(_) => Reason::LogAlreadyExists,
            GatewayError::PartitionNotFound { .. } => Reason::PartitionNotFound,
            GatewayError::InvalidConfig(_) => Reason::InvalidConfig,
            GatewayError::InvalidRequest(_) => Reason::InvalidRequest,
            GatewayError::BatchTooLarge { .. } => Reason::BatchTooLarge,
            GatewayError::RecordTooLarge { .. } => Reason::RecordTooLarge,
            GatewayError::ResponseTooLarge { record: true, .. } => Reason::RecordTooLarge,
            GatewayError::ResponseTooLarge { record: false, .. } => Reason::BatchTooLarge,
            GatewayError::CorruptBatch(_) => Reason::CorruptBatch,
            GatewayError::OffsetOutOfRange { .. } => Reason::OffsetOutOfRange,
            GatewayError::CorruptData(_) => Reason::CorruptData,
            GatewayError::Storage(_) => Reason::StorageError,
            GatewayError::Timeout(_) | GatewayError::LeadershipMoved(_) => Reason::Timeout,
            GatewayError::NotLeader { .. } => Reason::NotLeader,
            GatewayError::NotEnoughReplicas(_) => Reason::NotEnoughReplicas,
            GatewayError::Unavailable(_) => Reason::StorageError,
            GatewayError::ShuttingDown => Reason::ShuttingDown,
            GatewayError::Internal(_) => Reason::Internal,
            GatewayError::Refused { reason, .. } => *reason,
        }
    }

    pub fn into_status(self) -> Status {
        let meta: Vec<(&str, String)> = match &self {
            GatewayError::OffsetOutOfRange {
                earliest, latest, ..
            } => vec![
                ("earliest", earliest.0.to_string()),
                ("latest", latest.0.to_string()),
            ],
            GatewayError::NotLeader {
                leader: Some(addr), ..
            } => vec![("leader", addr.clone())],
            GatewayError::ResponseTooLarge {
                needed,
                max_response_bytes,
                ..
            } => vec![
                ("needed", needed.to_string()),
                ("max_response_bytes", max_response_bytes.to_string()),
            ],
            _ => vec![],
        };
        pyralog_proto::status::status(self.reason(), self.to_string(), &meta)
    }

    pub fn log_name(name: &str) -> Result<LogId, GatewayError> {
        LogId::new(name).map_err(|source| GatewayError::InvalidLogName {
            name: truncate_for_message(name),
            source,
        })
    }
}

/// Keeps error messages bounded when users send huge names: the first 64 characters and the
/// length, quoted.
pub(crate) fn truncate_for_message(s: &str) -> String {
    if s.chars().count() > 64 {
        let head: String = s.chars().take(64).collect();
        format!("{head:?}… ({} bytes)", s.len())
    } else {
        format!("{s:?}")
    }
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        e.into_status()
    }
}

impl From<HotError> for GatewayError {
    fn from(e: HotError) -> Self {
        match e {
            HotError::OffsetOutOfRange {
                requested,
                start,
                end,
            } => GatewayError::OffsetOutOfRange {
                requested: requested.0,
                earliest: start,
                latest: end,
            },
            HotError::Corrupt { .. } => GatewayError::CorruptData(e.to_string()),
            HotError::InvalidBatch(b) => GatewayError::CorruptBatch(b),
            HotError::BatchTooLarge { size, limit } => GatewayError::BatchTooLarge {
                size,
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
            },
            HotError::ProducerFenced { .. } => GatewayError::Refused {
                reason: Reason::ProducerFenced,
                detail: e.to_string(),
            },
            HotError::OutOfOrderSequence { .. } => GatewayError::Refused {
                reason: Reason::OutOfOrderSequence,
                detail: e.to_string(),
            },
            HotError::FencedEpoch { epoch, latest } => GatewayError::NotLeader {
                leader: None,
                detail: format!("this node's epoch {epoch} was replaced by {latest}"),
            },
            HotError::Closed => GatewayError::ShuttingDown,
            HotError::Io { .. } => GatewayError::Storage(e.to_string()),
        }
    }
}

impl From<MetadataError> for GatewayError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::AlreadyExists(log) => GatewayError::LogAlreadyExists(log),
            MetadataError::NotFound(log) => GatewayError::LogNotFound(log),
            MetadataError::Rejected(why) if why.contains("live nodes") => {
                GatewayError::NotEnoughReplicas(why)
            }
            MetadataError::Rejected(why) => GatewayError::InvalidConfig(why),
            MetadataError::Unavailable(why) => GatewayError::Unavailable(why),
            other => GatewayError::Storage(other.to_string()),
        }
    }
}
