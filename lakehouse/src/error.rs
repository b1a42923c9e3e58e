//! Errors of the lakehouse crate.

use thiserror::Error;

/// Why an Iceberg table could not be read or published.
#[derive(Debug, Error)]
pub enum LakehouseError {
    /// The object store failed (after its own retries).
    #[error("object store {op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// A table file in the bucket is not what this crate writes.
    #[error("{what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// Another writer committed the same table version first, every attempt.
    #[error("table {log}: gave up after {attempts} commit conflicts")]
    Contended { log: String, attempts: u32 },
    /// The configuration cannot describe a table (e.g. an object store URL without a bucket).
    #[error("lakehouse configuration: {0}")]
    Config(String),
}

impl LakehouseError {
    pub(crate) fn store(op: &'static str, key: impl ToString, source: object_store::Error) -> Self {
        LakehouseError::Store {
            op,
            key: key.to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl ToString, reason: impl ToString) -> Self {
        LakehouseError::Corrupt {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}
