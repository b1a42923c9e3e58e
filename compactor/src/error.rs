//! Errors of the compactor's steps.

use pyralog_cold_tier::ColdError;
use pyralog_hot_tier::HotError;

#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error("hot tier: {0}")]
    Hot(#[from] HotError),
    #[error("cold tier: {0}")]
    Cold(#[from] ColdError),
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
            CompactorError::Hot(_) => false,
            CompactorError::Task(_) => true,
        }
    }
}
