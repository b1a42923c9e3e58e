//! Errors of the hot tier.

use std::path::PathBuf;

use pyralog_types::batch::BatchError;
use pyralog_types::{Epoch, LogOffset};

#[derive(Debug, thiserror::Error)]
pub enum HotError {
    /// A file operation failed; `op` says which (`"open"`, `"append"`, `"fsync"` ...).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes fail their checks (CRC, framing). The data at this place cannot be served.
    #[error("corrupt data in {path} at byte {position}: {detail}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        detail: String,
    },
    /// The requested offset is outside `[start, end]` of this partition.
    #[error("offset {requested} is out of range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: LogOffset,
        start: LogOffset,
        end: LogOffset,
    },
    /// The batch handed to `append` is not valid.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The batch does not fit in a segment (`segment_bytes`, or 32-bit index positions).
    #[error("batch of {size} bytes is larger than a segment may hold ({limit})")]
    BatchTooLarge { size: usize, limit: u64 },
    /// An append under an epoch older than one the log already holds: the caller was a
    /// leader that has since been replaced (its writes must never land).
    #[error("epoch {epoch} is fenced: the log already holds epoch {latest}")]
    FencedEpoch { epoch: Epoch, latest: Epoch },
    /// The log was closed (shutdown or deletion) while the call was waiting.
    #[error("partition log is closed")]
    Closed,
}
