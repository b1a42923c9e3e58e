//! Errors of the compactor's steps.

use pyralog_cold_tier::ColdError;
use pyralog_hot_tier::HotError;
use pyralog_types::LogOffset;

#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error("hot tier: {0}")]
    Hot(#[from] HotError),
    /// The local log is damaged at `offset` (the first offset a read could not serve): no
    /// retry helps; the range must be repaired from another replica.
    #[error("corrupt local data at offset {offset}: {source}")]
    Corrupt {
        offset: LogOffset,
        #[source]
        source: HotError,
    },
    #[error("cold tier: {0}")]
    Cold(#[from] ColdError),
    #[error("iceberg table: {0}")]
    Lakehouse(#[from] pyralog_lakehouse::LakehouseError),
    /// A ledger log's archive or request breaks the ledger's rules (e.g. an archived object
    /// without a seal, or compaction asked of a ledger): never retried.
    #[error("ledger: {0}")]
    Ledger(String),
    /// The archive is on write-once storage (S3 Object Lock): the step would rewrite or
    /// delete archived objects, which the bucket keeps until their retain-until date. Never
    /// retried.
    #[error("refused under object lock: {0}")]
    ObjectLock(String),
    /// A blocking encode/read task died (a bug, or the runtime shutting down).
    #[error("background task failed: {0}")]
    Task(String),
}

impl CompactorError {
    /// Whether running the step again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            CompactorError::Cold(e) => e.is_retriable(),
            CompactorError::Hot(HotError::Io { .. } | HotError::OffsetOutOfRange { .. }) => true,
            CompactorError::Hot(_)
            | CompactorError::Corrupt { .. }
            | CompactorError::Ledger(_)
            | CompactorError::ObjectLock(_) => false,
            CompactorError::Task(_) => true,
            CompactorError::Lakehouse(e) => {
                !matches!(e, pyralog_lakehouse::LakehouseError::Config(_))
            }
        }
    }
}
