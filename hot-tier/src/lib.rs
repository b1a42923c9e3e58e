//! The hot tier: the recent part of each partition, on local disk.
//!
//! A [`PartitionLog`] is a directory of segments, each a `.log` file of batches (stored exactly
//! as received, see `pyralog_types::batch`) plus a sparse `.index` (offset → file position) and a
//! `.timeindex` (timestamp → offset), both memory-mapped. Segments are named by their base
//! offset in 20 digits (`00000000000000001000.log`).
//!
//! All methods do blocking file I/O: async callers run them on `spawn_blocking`. A
//! `PartitionLog` is `Send + Sync`; appends are serialised internally, reads run concurrently
//! with appends and with each other.
//!
//! Durability: [`PartitionLog::append`] writes to the OS; [`PartitionLog::flush`] fsyncs (group
//! commit: concurrent callers share one fsync). The log's [`FsyncPolicy`] tells callers which to
//! call when; segments are always fsynced when they roll, so recovery after a crash only has to
//! check the active segment.
//!
//! File descriptors: segment files are opened on use and closed when idle by a node-wide
//! budget ([`OpenFiles`], shared through [`PartitionLog::open_with_files`]); index files are
//! memory-mapped and keep no descriptor. So the number of partitions a node hosts is not
//! bounded by its open-file limit.
//!
//! Idempotent producers: the leader's append drops a retried batch (answering with the
//! original offsets) and refuses out-of-order sequences and fenced producer epochs; the
//! per-producer state is kept in memory and in `{offset}.snapshot` files (see `producers`).
//! Records carrying a dedup id (`pyralog_types::batch::DEDUP_ID_HEADER`) are stored once
//! within a window of recent ids (see `dedup`).
//!
//! Ledger logs keep a chain journal beside their segments: the hash-chain head after every
//! batch, computed as it is appended (see `chain`), so the archiver and the replicas can tell
//! a record altered on disk from the one that was written.

mod active;
mod chain;
mod dedup;
mod epochs;
mod error;
mod files;
mod index;
mod log;
mod producers;
mod read;
mod recovery;
pub mod replication;
mod retention;
mod rewrite;
mod scan;
mod segment;
#[cfg(test)]
mod tests;

pub use dedup::DedupSettings;
pub use error::HotError;
pub use files::{OpenFiles, DEFAULT_MAX_OPEN_FILES, MIN_MAX_OPEN_FILES};
pub use log::{
    AppendInfo, ChainMismatch, PartitionLog, PartitionOptions, ReadResult, RewriteOutcome,
    SegmentInfo,
};
pub use producers::{ProducerSnapshot, DEFAULT_PRODUCER_EXPIRATION};
