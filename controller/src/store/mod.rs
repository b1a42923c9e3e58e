//! Durable controller storage for openraft (v2 storage API), in plain files.
//!
//! Why our own files and not an embedded database: the controller's data is small (cluster
//! metadata, a snapshot every `snapshot_every` commands), the access pattern is an append-only
//! log plus a few tiny records, and a pure-Rust format we can read, test and repair beats a
//! C++ dependency. Layout under the controller directory:
//!
//! ```text
//! log/{first index:020}.seg   Raft log entries: [len u32 LE][crc32c u32 LE][JSON entry] ...
//! log/meta.json               vote, committed log id, last purged log id (atomic replace)
//! snapshot/snapshot.json      the latest snapshot: meta + state machine (atomic replace)
//! ```
//!
//! - [`log`]: the Raft log and vote ([`LogStore`]); appends are fsynced before openraft is
//!   told they are durable, and a torn tail left by a crash is cut on open.
//! - [`state_machine`]: the applied [`ClusterState`](crate::ClusterState) and snapshots
//!   ([`StateMachineStore`]); it is rebuilt on start from the snapshot plus the committed log.

pub(crate) mod fsutil;
pub(crate) mod log;
pub(crate) mod state_machine;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub(crate) use log::LogStore;
pub(crate) use state_machine::StateMachineStore;

/// A storage failure, with the file it happened on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Bytes on disk that a crash cannot explain (a torn tail is cut, not reported).
    #[error("corrupt {} at byte {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

/// Runs blocking file I/O off the async worker threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}
