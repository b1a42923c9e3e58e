//! Errors of the ledger audit (a finding about the data is not an error: see
//! [`crate::Finding`]).

use pyralog_cold_tier::ColdError;
use pyralog_ledger::LedgerError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cold tier: {0}")]
    Cold(#[from] ColdError),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("object store: {op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// The log or partition asked for does not exist in the bucket, or is not a ledger.
    #[error("{0}")]
    NotFound(String),
    /// What was asked cannot be answered from what the bucket holds.
    #[error("{0}")]
    Unprovable(String),
}

impl AuditError {
    pub(crate) fn store(op: &'static str, key: impl ToString, source: object_store::Error) -> Self {
        AuditError::Store {
            op,
            key: key.to_string(),
            source,
        }
    }
}
