//! The partition log: segments, appends, reads, rolling, retention, recovery.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pyralog_types::{Clock, Epoch, FsyncPolicy, LogConfig, LogOffset, Retention, TimestampMicros};
use tokio::sync::watch;

use crate::error::HotError;

/// Settings of one partition log (derived from the log's `LogConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionOptions {
    pub segment_bytes: u64,
    pub segment_ms: Duration,
    pub index_interval_bytes: u32,
    /// Bytes preallocated for the active segment's mmap'd indexes (trimmed when it rolls).
    pub max_index_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl PartitionOptions {
    pub fn from_config(c: &LogConfig) -> Self {
        PartitionOptions {
            segment_bytes: c.segment_bytes,
            segment_ms: c.segment_ms,
            index_interval_bytes: c.index_interval_bytes,
            max_index_bytes: 10 * 1024 * 1024,
            fsync: c.fsync,
        }
    }
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: LogOffset,
    pub last_offset: LogOffset,
    /// The log end offset after the append (= `last_offset + 1`).
    pub end_offset: LogOffset,
    pub max_timestamp: TimestampMicros,
}

/// Whole batches read from the log.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Concatenated, CRC-verified batches. The first batch contains the requested offset (it may
    /// start before it); batches never start at or beyond the read limit.
    pub batches: Bytes,
    /// Offset after the last returned batch (where the next read continues).
    pub next_offset: LogOffset,
}

/// Description of a segment, for uploaders and admin output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: LogOffset,
    /// Last offset stored in the segment (`None` if empty).
    pub last_offset: Option<LogOffset>,
    pub size_bytes: u64,
    pub max_timestamp: Option<TimestampMicros>,
    pub log_path: PathBuf,
    pub is_active: bool,
}

/// One partition's local log.
pub struct PartitionLog {
    _private: (),
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog").finish_non_exhaustive()
    }
}

#[allow(unused_variables)]
impl PartitionLog {
    /// Opens the log in `dir` (creating it if missing). After a clean shutdown nothing is
    /// scanned; after a crash the active segment is scanned, a torn tail truncated, and its
    /// indexes rebuilt. Missing or damaged indexes of any segment are rebuilt from the `.log`.
    pub fn open(
        dir: impl AsRef<Path>,
        options: PartitionOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<PartitionLog, HotError> {
        todo!()
    }

    /// Appends a validated batch (as received from a producer or leader), assigning offsets
    /// from the log end and stamping `epoch`. Rolls first if the active segment is full or old.
    pub fn append(&self, batch: Bytes, epoch: Epoch) -> Result<AppendInfo, HotError> {
        todo!()
    }

    /// Appends a batch that already carries its offsets and epoch (a follower copying its
    /// leader). Its base offset must equal the log end offset.
    pub fn append_replicated(&self, batch: Bytes) -> Result<AppendInfo, HotError> {
        todo!()
    }

    /// fsyncs everything appended so far; returns the durable end offset. Concurrent callers
    /// share one fsync.
    pub fn flush(&self) -> Result<LogOffset, HotError> {
        todo!()
    }

    /// Reads whole batches from the one containing `from`, up to `max_bytes` (always at least
    /// one batch if any is readable), never including a batch whose base offset is `>= limit`.
    /// `from == end` (or `from >= limit`) returns an empty result; `from` below the start or
    /// above the end is `OffsetOutOfRange`. Bad bytes are `Corrupt`, never returned.
    pub fn read(
        &self,
        from: LogOffset,
        max_bytes: usize,
        limit: LogOffset,
    ) -> Result<ReadResult, HotError> {
        todo!()
    }

    /// The first offset whose record timestamp is `>= ts`, or `None` if every record is older.
    pub fn offset_for_timestamp(&self, ts: TimestampMicros) -> Result<Option<LogOffset>, HotError> {
        todo!()
    }

    /// First offset still stored locally.
    pub fn start_offset(&self) -> LogOffset {
        todo!()
    }

    /// Next offset to be assigned.
    pub fn end_offset(&self) -> LogOffset {
        todo!()
    }

    /// End offset that has been fsynced.
    pub fn durable_offset(&self) -> LogOffset {
        todo!()
    }

    /// Receives the log end offset after each append/truncation (for long-polling readers).
    pub fn subscribe_end(&self) -> watch::Receiver<LogOffset> {
        todo!()
    }

    /// Closes the active segment and starts a new one (no-op if the active one is empty).
    pub fn roll(&self) -> Result<(), HotError> {
        todo!()
    }

    /// Rolls if the active segment's first batch is older than `segment_ms`.
    pub fn roll_if_due(&self) -> Result<bool, HotError> {
        todo!()
    }

    /// Applies `retention` in whole closed segments, oldest first, only to segments whose
    /// last offset is below `deletable_below` (the cold tier's safe point; `LogOffset::MAX`
    /// when there is no cold tier). Returns the deleted segments.
    pub fn enforce_retention(
        &self,
        retention: Retention,
        deletable_below: LogOffset,
    ) -> Result<Vec<SegmentInfo>, HotError> {
        todo!()
    }

    /// All segments, oldest first; the last one is the active segment.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        todo!()
    }

    /// Removes every record at or after `offset` (a follower truncating a divergent suffix).
    pub fn truncate_to(&self, offset: LogOffset) -> Result<(), HotError> {
        todo!()
    }

    /// `(epoch, start offset)` pairs: the first offset each epoch wrote, oldest first.
    pub fn epochs(&self) -> Vec<(Epoch, LogOffset)> {
        todo!()
    }

    /// The end offset of `epoch` on this log: the start of the next newer epoch, or the log
    /// end if `epoch` is the latest (the answer a leader gives a rejoining follower).
    pub fn end_offset_for_epoch(&self, epoch: Epoch) -> Option<LogOffset> {
        todo!()
    }

    /// Flushes, trims the indexes and marks the shutdown clean so the next open scans nothing.
    pub fn close(&self) -> Result<(), HotError> {
        todo!()
    }

    /// Closes and removes the whole directory.
    pub fn delete(self) -> Result<(), HotError> {
        todo!()
    }
}
