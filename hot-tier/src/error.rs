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
    /// An idempotent producer's batch under a producer epoch older than the one the log
    /// knows: another instance of the producer has taken over, and this one must stop (not
    /// retriable).
    #[error("producer {producer_id} is fenced: its epoch {epoch} is older than the current epoch {current}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// An idempotent producer's batch whose base sequence neither continues the producer's
    /// sequence nor repeats one of its recent batches: batches were lost or reordered in
    /// between (not retriable as is; the producer must reset its sequence or epoch).
    #[error("out-of-order sequence from producer {producer_id}: expected base sequence {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    /// The log was closed (shutdown or deletion) while the call was waiting.
    #[error("partition log is closed")]
    Closed,
}
